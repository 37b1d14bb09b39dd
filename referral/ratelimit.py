"""Rate limits (the `limits` library): per client IP on public endpoints, per email on failed logins.

Counters live in process, or in Redis when REDIS_URL is set so that every worker shares them.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from referral.config import Settings
from referral.errors import RateLimited


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit
        self.per_ip: RateLimitItem = parse(settings.rate_limit_ip)
        self.failed_logins: RateLimitItem = parse(settings.rate_limit_login)
        self.storage: Storage = (
            # on redis-py, the client the code cache uses too (limits' default would be coredis)
            storage_from_string(_async_redis_url(settings.redis_url), implementation="redispy")
            if settings.redis_url
            else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(self.storage)

    async def hit_ip(self, ip: str, scope: str) -> None:
        """Count a request from `ip`; 429 once the per-IP limit is used up."""
        if self.enabled and not await self._limiter.hit(self.per_ip, "ip", scope, ip):
            raise RateLimited(retry_after=await self._retry_after(self.per_ip, "ip", scope, ip))

    async def check_login(self, email: str) -> None:
        """429 while `email` has used up its failed logins."""
        if self.enabled and not await self._limiter.test(self.failed_logins, "login", email):
            raise RateLimited(
                "Too many failed logins for this email: try again later.",
                retry_after=await self._retry_after(self.failed_logins, "login", email),
            )

    async def record_failed_login(self, email: str) -> None:
        if self.enabled:
            await self._limiter.hit(self.failed_logins, "login", email)

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))


def _async_redis_url(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"
