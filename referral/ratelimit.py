"""Rate limits (the `limits` library): per client IP, per user on writes, and failed logins.

Failed logins are counted per (email, client IP), and a login takes its slot before bcrypt runs:
concurrent wrong guesses can never exceed the limit, and a right password gives the slot back, so
successful logins never count. Wrong guesses from one address never lock the owner out elsewhere.

Counters live in process (`InProcessCounters`), or with REDIS_URL in Redis, shared by every worker
and instance (keys under `{SERVICE_NAME}:limits:`). While Redis is unavailable (`referral.redis_link`)
they count in process again: each process then allows the full limit on its own, until Redis is back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from referral.config import Settings
from referral.errors import RateLimited
from referral.redis_link import REDIS_ERRORS, RedisLink

LOGIN = "login"
SWEEP_SECONDS = 1.0

T = TypeVar("T")
Strategy = Literal["sliding", "fixed"]  # a field of `Counters`


@dataclass(frozen=True)
class Counters:
    """One storage and the two strategies on it."""

    storage: Storage
    sliding: SlidingWindowCounterRateLimiter  # two counters a key: its cost does not grow with the hits
    fixed: FixedWindowRateLimiter  # for failed logins: its counter can be given back

    @classmethod
    def on(cls, storage: Storage) -> Counters:
        return cls(storage, SlidingWindowCounterRateLimiter(storage), FixedWindowRateLimiter(storage))


class InProcessCounters(MemoryStorage):
    """limits' in-process storage, with a cost per hit that does not grow with the number of clients.

    limits' MemoryStorage starts a sweep over every key it holds after each increment, so a hit
    costs time in proportion to the clients counted in the window (about 1.4 ms a hit with 10,000
    of them: bench/RESULTS.md): a stranger with many addresses would slow every request down. Here
    a key found expired is dropped when read, as MemoryStorage does, and the other expired keys at
    most every SWEEP_SECONDS. `get`, `incr` and `decr` are written whole rather than calling
    MemoryStorage's: limits wraps these methods anew in every subclass (an error-translating
    coroutine), so calling the inherited ones would wrap each call twice. Nothing here awaits, so
    the event loop runs each call whole: no locks.
    """

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    async def get(self, key: str) -> int:
        return self._count(key, time.time())

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        count = self.storage[key] = self._count(key, now) + amount
        if count == amount:
            self.expirations[key] = now + expiry
        if now >= self._next_sweep:
            self._sweep(now)
        return count

    async def decr(self, key: str, amount: int = 1) -> int:
        count = self._count(key, time.time())
        if count:
            count = self.storage[key] = max(count - amount, 0)
        return count

    def _count(self, key: str, now: float) -> int:
        if self.expirations.get(key, 0.0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            return 0
        return self.storage[key]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        for key in [key for key, expires in self.expirations.items() if expires <= now]:
            del self.expirations[key]
            self.storage.pop(key, None)


class RateLimits:
    def __init__(self, settings: Settings, redis: RedisLink | None = None) -> None:
        self.enabled = settings.rate_limit
        self.per_ip: RateLimitItem = parse(settings.rate_limit_ip)
        self.per_user: RateLimitItem = parse(settings.rate_limit_user)
        self.failed_logins: RateLimitItem = parse(settings.rate_limit_login)
        self.redis = redis
        self.local = Counters.on(InProcessCounters())
        self.shared = (
            Counters.on(
                RedisStorage(
                    _async_redis_url(settings.redis_url or ""),
                    implementation="redispy",
                    key_prefix=f"{redis.prefix}:limits",
                    connection_pool=redis.pool,  # the code cache's pool: its timeouts, no retries
                )
            )
            if redis is not None
            else None
        )

    async def hit_ip(self, ip: str, scope: str) -> None:
        """Count a request from `ip`; RateLimited once the per-IP limit is used up."""
        if not self.enabled:
            return
        if not await self._use(lambda counters: counters.sliding.hit(self.per_ip, "ip", scope, ip)):
            raise RateLimited(retry_after=await self._retry_after("sliding", self.per_ip, "ip", scope, ip))

    async def hit_key(self, caller: str, scope: str) -> None:
        """Count a request of an integration key (`IntegrationKeys.caller`'s name), limited like an address."""
        if not self.enabled:
            return
        if not await self._use(lambda counters: counters.sliding.hit(self.per_ip, "key", scope, caller)):
            raise RateLimited(retry_after=await self._retry_after("sliding", self.per_ip, "key", scope, caller))

    async def hit_user(self, user_id: int) -> None:
        """Count an authenticated write of the user; RateLimited once RATE_LIMIT_USER is used up."""
        user = str(user_id)
        if self.enabled and not await self._use(lambda counters: counters.sliding.hit(self.per_user, "user", user)):
            raise RateLimited(
                "Too many changes from your account: slow down.",
                retry_after=await self._retry_after("sliding", self.per_user, "user", user),
            )

    async def take_login_attempt(self, email: str, ip: str) -> None:
        """Take one of the failed logins `email` may have from `ip`, before the password is checked."""
        item = self.failed_logins
        if self.enabled and not await self._use(lambda counters: counters.fixed.hit(item, LOGIN, email, ip)):
            raise RateLimited(
                "Too many failed logins for this email from your address: try again later.",
                retry_after=await self._retry_after("fixed", item, LOGIN, email, ip),
            )

    async def give_back_login_attempt(self, email: str, ip: str) -> None:
        """The password was right: the attempt does not count."""
        if not self.enabled:
            return
        key = self.failed_logins.key_for(LOGIN, email, ip)

        async def give_back(counters: Counters) -> None:
            # never below zero: the slot may have been taken from the other storage (Redis went or came back)
            if await counters.storage.get(key) > 0:
                await counters.storage.incr(key, self.failed_logins.get_expiry(), amount=-1)

        await self._use(give_back)

    async def _retry_after(self, strategy: Strategy, item: RateLimitItem, *identifiers: str) -> int:
        """Seconds until `item` would allow a hit again (Retry-After)."""

        async def window_reset(counters: Counters) -> float:
            limiter: SlidingWindowCounterRateLimiter | FixedWindowRateLimiter = getattr(counters, strategy)
            return (await limiter.get_window_stats(item, *identifiers)).reset_time

        return max(1, math.ceil(await self._use(window_reset) - time.time()))

    async def _use(self, action: Callable[[Counters], Awaitable[T]]) -> T:
        """`action` on the shared counters while Redis is up, otherwise (or when it fails) on this process's."""
        if self.shared is not None and self.redis is not None and self.redis.up:
            try:
                return await action(self.shared)
            except REDIS_ERRORS as error:
                self.redis.failed(error)
        return await action(self.local)


def _async_redis_url(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"
