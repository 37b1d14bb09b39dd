"""Rate limits (the `limits` library): per client IP, per user on writes, and failed logins.

Failed logins are counted per (email, client IP), and a login takes its slot before bcrypt runs:
concurrent wrong guesses can never exceed the limit, and a right password gives the slot back, so
successful logins never count. Wrong guesses from one address never lock the owner out elsewhere.
Counters live in process, or in Redis when REDIS_URL is set so that every worker shares them.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

from referral.config import Settings
from referral.errors import RateLimited

LOGIN = "login"


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit
        self.per_ip: RateLimitItem = parse(settings.rate_limit_ip)
        self.per_user: RateLimitItem = parse(settings.rate_limit_user)
        self.failed_logins: RateLimitItem = parse(settings.rate_limit_login)
        self.storage: Storage = (
            # on redis-py, the client the code cache uses too (limits' default would be coredis)
            storage_from_string(_async_redis_url(settings.redis_url), implementation="redispy")
            if settings.redis_url
            else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._attempts = FixedWindowRateLimiter(self.storage)  # its counter can be given back

    async def hit_ip(self, ip: str, scope: str) -> None:
        """Count a request from `ip`; RateLimited once the per-IP limit is used up."""
        if self.enabled and not await self._limiter.hit(self.per_ip, "ip", scope, ip):
            raise RateLimited(retry_after=await self._retry_after(self._limiter, self.per_ip, "ip", scope, ip))

    async def hit_user(self, user_id: int) -> None:
        """Count an authenticated write of the user; RateLimited once RATE_LIMIT_USER is used up."""
        if self.enabled and not await self._limiter.hit(self.per_user, "user", str(user_id)):
            raise RateLimited(
                "Too many changes from your account: slow down.",
                retry_after=await self._retry_after(self._limiter, self.per_user, "user", str(user_id)),
            )

    async def take_login_attempt(self, email: str, ip: str) -> None:
        """Take one of the failed logins `email` may have from `ip`, before the password is checked."""
        if self.enabled and not await self._attempts.hit(self.failed_logins, LOGIN, email, ip):
            raise RateLimited(
                "Too many failed logins for this email from your address: try again later.",
                retry_after=await self._retry_after(self._attempts, self.failed_logins, LOGIN, email, ip),
            )

    async def give_back_login_attempt(self, email: str, ip: str) -> None:
        """The password was right: the attempt does not count."""
        if self.enabled:
            key = self.failed_logins.key_for(LOGIN, email, ip)
            await self.storage.incr(key, self.failed_logins.get_expiry(), amount=-1)

    async def _retry_after(
        self, limiter: MovingWindowRateLimiter | FixedWindowRateLimiter, item: RateLimitItem, *identifiers: str
    ) -> int:
        stats = await limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))


def _async_redis_url(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"
