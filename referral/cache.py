"""The code cache: an active code by its owner's email, for `GET /refer/getcode`.

In process (cachetools TTLCache, bounded). Entries live at most CODE_CACHE_TTL seconds and are never
served past the code's own expiry. A write drops its entry here at once; with REDIS_URL it also
tells every other worker and instance (Redis pub/sub), otherwise they see it within CODE_CACHE_TTL.
Referral registration never reads it.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from cachetools import TTLCache

from referral.clock import utcnow
from referral.services.models import CodeInfo

log = logging.getLogger("referral.cache")

INVALIDATION_CHANNEL = "referral:code-cache:invalidate"


class CodeCache:
    def __init__(self, *, ttl: int, maxsize: int = 10_000) -> None:
        self.enabled = ttl > 0
        self._entries: TTLCache[str, CodeInfo] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1))
        self._invalidations = 0
        self.broadcast: InvalidationBroadcast | None = None

    def get(self, email: str) -> CodeInfo | None:
        if not self.enabled:
            return None
        try:
            entry = self._entries[email]  # one lookup: TTLCache.get() checks membership first, then looks up
        except KeyError:
            return None
        if entry.expires_at <= utcnow():
            self._entries.pop(email, None)
            return None
        return entry

    def fill_ticket(self) -> int:
        """Take before reading the database; `put` with it drops a value a write may have outdated."""
        return self._invalidations

    def put(self, email: str, entry: CodeInfo, *, ticket: int) -> None:
        if self.enabled and ticket == self._invalidations:
            self._entries[email] = entry

    def drop(self, email: str) -> None:
        """Forget `email` in this process."""
        self._invalidations += 1
        self._entries.pop(email, None)

    async def invalidate(self, email: str) -> None:
        """Forget `email` here and, with REDIS_URL, in every other worker."""
        self.drop(email)
        if self.broadcast is not None:
            await self.broadcast.publish(email)

    def clear(self) -> None:
        self._invalidations += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class InvalidationBroadcast:
    """Redis pub/sub between the workers' caches: each publishes its writes and drops what others publish.

    Redis being down never fails a write: the publish is logged and skipped, and other workers
    then see the change within CODE_CACHE_TTL, as without Redis.
    """

    def __init__(self, url: str, cache: CodeCache) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._cache = cache
        cache.broadcast = self

    async def publish(self, email: str) -> None:
        try:
            await self._redis.publish(INVALIDATION_CHANNEL, email)
        except (aioredis.RedisError, OSError) as error:
            log.warning("could not broadcast a code cache invalidation: %r", error)

    async def listen(self) -> None:
        """Drop every email other workers publish; reconnects after a failure, until cancelled."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATION_CHANNEL)
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                        if message is not None:
                            self._cache.drop(message["data"].decode())
            except (aioredis.RedisError, OSError) as error:
                log.warning("code cache invalidations from Redis interrupted, retrying: %r", error)
                self._cache.clear()  # whatever was missed meanwhile is forgotten
                await asyncio.sleep(1)

    async def close(self) -> None:
        await self._redis.aclose()
