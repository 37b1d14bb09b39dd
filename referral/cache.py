"""The code cache: an active code by its owner's email, for `GET /refer/getcode`.

Without REDIS_URL it lives in process (cachetools TTLCache, bounded): a write drops its entry in this
worker at once; other workers see the change within CODE_CACHE_TTL (use Redis for several workers).

With REDIS_URL it lives in Redis, one copy for every worker and instance, so that a write is seen by
the very next request wherever it lands: a lookup is one GET; a write DELetes the entry before its
answer is sent; a fill SETs it with a TTL capped at both CODE_CACHE_TTL and the code's own expiry.

A fill never brings back what a concurrent write dropped. A lookup that misses first takes a *lease*
(a random token under a key of its own), then reads the database, then stores its answer only if the
lease is still its own (one Lua script, so the check and the SET are atomic). A write deletes the entry
and the lease in one command after its transaction commits: a read that began before the commit had
taken its lease before the delete, so the delete took it away and its (old) answer is not stored; a
read that takes its lease after the delete reads the committed state. A lease lives 10 s: a read
slower than that stores nothing. Concurrent misses each take the lease in turn; only the last stores.

While Redis is unavailable (`referral.redis_link`) lookups go to the database and nothing is cached in
process (a copy here would miss other instances' writes). A write that could not delete its entry
keeps the email, and the recovery step deletes those entries before this process uses Redis again;
it also stops trusting entries filled before the outage began (another instance's write may have
failed to delete them). What is left: an instance that never noticed the outage may serve such an
entry until the writer's recovery (about a second after Redis is back) or its TTL.

A cached code is never served past its expiry, in either store. Referral registration never reads it.

An entry in Redis is JSON with a version, read back through `CodeInfo`'s rules (`decode`): an entry
this code cannot read (another version's, during a rolling deploy) or that breaks those rules is a
miss, never an error or a wrong answer. Keys name an email by a keyed hash (`email_key`), never as is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from cachetools import TTLCache
from pydantic import Field, TypeAdapter, ValidationError

from referral.clock import utcnow
from referral.redis_link import REDIS_ERRORS, RedisLink
from referral.services.models import DAY_MAX, CodeInfo

ENTRY_VERSION = 2  # 2: codes carry max_uses
KEY_CONTEXT = b"referral cache key:"  # the key's use here is not its use for tokens or logs
LONGEST_EXPIRY = timedelta(days=DAY_MAX + 1)  # from now: a code lives DAY_MAX days, plus clock skew
CLOCK_SKEW_SECONDS = 60  # how far in the future another instance may have filled an entry
LEASE_MS = 10_000
MAX_PENDING = 10_000  # invalidations kept during an outage; past it, every entry is deleted on recovery
DELETE_BATCH = 500

# KEYS[1] entry, KEYS[2] lease; ARGV[1] lease token, ARGV[2] value, ARGV[3] TTL in ms
FILL_SCRIPT = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""

# What `fill_ticket` hands out and `put` takes back: an int in process, a lease token (or None: do not
# store) in Redis.
Ticket = int | str | None


class CodeCache:
    """`get`, then on a miss `fill_ticket` before reading the database and `put` after; writes `invalidate`."""

    def __init__(
        self, *, ttl: int, maxsize: int = 10_000, redis: RedisLink | None = None, secret_key: str = ""
    ) -> None:
        self.enabled = ttl > 0
        self.ttl = ttl
        self._entries: TTLCache[str, CodeInfo] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1))
        self._invalidations = 0
        shared = redis is not None and self.enabled
        self.shared = SharedEntries(redis, ttl=ttl, secret_key=secret_key) if shared else None

    async def get(self, email: str) -> CodeInfo | None:
        if not self.enabled:
            return None
        if self.shared is not None:
            return await self.shared.get(email)
        try:
            entry = self._entries[email]  # one lookup: TTLCache.get() checks membership first, then looks up
        except KeyError:
            return None
        if entry.expires_at <= utcnow():
            self._entries.pop(email, None)
            return None
        return entry

    async def fill_ticket(self, email: str) -> Ticket:
        """Take before reading the database; `put` with it stores nothing a write may have outdated."""
        if self.shared is not None:
            return await self.shared.lease(email)
        return self._invalidations

    async def put(self, email: str, entry: CodeInfo, *, ticket: Ticket) -> None:
        if not self.enabled or ticket is None:
            return
        if self.shared is not None:
            if isinstance(ticket, str):
                await self.shared.fill(email, entry, lease=ticket)
        elif ticket == self._invalidations:
            self._entries[email] = entry

    async def invalidate(self, email: str) -> None:
        """Forget `email`: before the write's answer is sent, so that the next request sees the write."""
        self._invalidations += 1
        self._entries.pop(email, None)
        if self.shared is not None:
            await self.shared.drop(email)

    def clear(self) -> None:
        """Forget everything this process cached (in Redis: this process serves none of it again)."""
        self._invalidations += 1
        self._entries.clear()
        if self.shared is not None:
            self.shared.distrust_until(time.time())

    def __len__(self) -> int:
        return len(self._entries)


class SharedEntries:
    """The cache in Redis: `{prefix}:code:{email_key}` entries and `{prefix}:code-lease:{email_key}` leases."""

    def __init__(self, link: RedisLink, *, ttl: int, secret_key: str) -> None:
        self.link = link
        self.secret_key = secret_key
        self.ttl_ms = ttl * 1000
        self.entry_prefix = f"{link.prefix}:code:"
        self.lease_prefix = f"{link.prefix}:code-lease:"
        self._fill = link.client.register_script(FILL_SCRIPT)
        self._pending: set[str] = set()  # emails whose entries a write could not delete
        self._overflowed = False
        self._trusted_after = 0.0  # entries filled at or before this time.time() are not served
        link.on_recovery(self._recover)

    async def get(self, email: str) -> CodeInfo | None:
        if not self.link.up:
            return None
        try:
            value = await self.link.client.get(self.entry_prefix + self.key(email))
        except REDIS_ERRORS as error:
            self.link.failed(error)
            return None
        if value is None:
            return None
        decoded = decode(value)
        if decoded is None:
            return None
        entry, filled_at = decoded
        if filled_at <= self._trusted_after or entry.expires_at <= utcnow():
            return None
        return entry

    async def lease(self, email: str) -> str | None:
        if not self.link.up:
            return None
        token = secrets.token_hex(8)
        try:
            await self.link.client.set(self.lease_prefix + self.key(email), token, px=LEASE_MS)
        except REDIS_ERRORS as error:
            self.link.failed(error)
            return None
        return token

    async def fill(self, email: str, entry: CodeInfo, *, lease: str) -> None:
        ttl_ms = min(self.ttl_ms, int((entry.expires_at - utcnow()).total_seconds() * 1000))
        if ttl_ms <= 0 or not self.link.up:
            return
        keys = [prefix + self.key(email) for prefix in self._prefixes]
        try:
            await self._fill(keys=keys, args=[lease, encode(entry, filled_at=time.time()), ttl_ms])
        except REDIS_ERRORS as error:
            self.link.failed(error)

    async def drop(self, email: str) -> None:
        if self.link.up:
            try:
                await self.link.client.delete(*(prefix + self.key(email) for prefix in self._prefixes))
                return
            except REDIS_ERRORS as error:
                self.link.failed(error)
        if len(self._pending) < MAX_PENDING:
            self._pending.add(email)
        else:
            self._overflowed = True

    def key(self, email: str) -> str:
        return email_key(email, self.secret_key)

    def distrust_until(self, moment: float) -> None:
        self._trusted_after = max(self._trusted_after, moment)

    async def _recover(self, down_since: float) -> None:
        """Before Redis is used again: delete what writes could not, stop trusting older entries."""
        while self._overflowed or self._pending:  # no await after the last check: see RedisLink._recover
            if self._overflowed:
                self._overflowed = False
                self._pending.clear()  # covered: every entry goes
                await self._delete_every_entry()
                continue
            batch = [self._pending.pop() for _ in range(min(DELETE_BATCH, len(self._pending)))]
            try:
                await self.link.client.delete(
                    *(prefix + self.key(email) for email in batch for prefix in self._prefixes)
                )
            except REDIS_ERRORS:
                self._pending.update(batch)
                raise
        self.distrust_until(down_since)

    async def _delete_every_entry(self) -> None:
        try:
            for prefix in self._prefixes:
                batch: list[bytes] = []
                async for key in self.link.client.scan_iter(match=glob_escape(prefix) + "*", count=DELETE_BATCH):
                    batch.append(key)
                    if len(batch) == DELETE_BATCH:
                        await self.link.client.unlink(*batch)
                        batch = []
                if batch:
                    await self.link.client.unlink(*batch)
        except REDIS_ERRORS:
            self._overflowed = True
            raise

    @property
    def _prefixes(self) -> tuple[str, str]:
        return (self.entry_prefix, self.lease_prefix)


def email_key(email: str, secret_key: str) -> str:
    """An email's name in Redis keys: HMAC-SHA256 keyed with SECRET_KEY, 128 bits in hex."""
    mac = hmac.new(secret_key.encode(), KEY_CONTEXT + email.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return mac.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CachedCode:
    """An entry in Redis: the code, when it was filled (time.time()), and the version of this shape."""

    version: Literal[2]
    filled_at: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    code: CodeInfo


CACHED_CODE = TypeAdapter(CachedCode)


def encode(entry: CodeInfo, *, filled_at: float) -> bytes:
    return CACHED_CODE.dump_json(CachedCode(ENTRY_VERSION, filled_at, entry))


def decode(value: bytes) -> tuple[CodeInfo, float] | None:
    """The entry and when it was filled; None for a value this version cannot read or should not trust."""
    try:
        cached = CACHED_CODE.validate_json(value)
    except ValidationError:
        return None
    if cached.code.expires_at > utcnow() + LONGEST_EXPIRY or cached.filled_at > time.time() + CLOCK_SKEW_SECONDS:
        return None
    return cached.code, cached.filled_at


def glob_escape(text: str) -> str:
    """`text` matched literally by Redis' glob-style MATCH."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
