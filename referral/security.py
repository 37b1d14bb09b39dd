"""Passwords (bcrypt over a SHA-256 pre-hash, off the event loop) and JWT access tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

import bcrypt
import jwt

from referral import metrics
from referral.clock import utcnow
from referral.config import Settings
from referral.errors import Overloaded, RateLimited, ServiceError
from referral.redis_link import REDIS_ERRORS, RedisLink

JWT_ALGORITHM = "HS256"
NETWORK_PREFIX = {4: 24, 6: 64}  # HASH_CONCURRENCY_PER_NETWORK counts a /24 of IPv4, a /64 of IPv6
SLOT_LEASE_MS = 60_000  # outlives any hash (HASH_QUEUE_MAX bounds the wait): a slot whose holder died frees itself
HASHING_NICENESS = 19  # the lowest: at 10 a login storm still delayed other requests (bench/RESULTS.md, isolation)
T = TypeVar("T")


def _yield_to_event_loop() -> None:
    """Run this hashing thread at a lower priority (Linux keeps a nice value per thread).

    A login storm then takes only the CPU the event loop leaves over, instead of an equal share of
    it per hashing thread: other requests keep their latency (see bench/RESULTS.md, isolation).
    """
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: plain threads
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


# bcrypt is CPU-bound and releases the GIL: one thread per core uses every core for logins, and the
# lower priority leaves the event loop its share whenever it has work (bench/RESULTS.md, isolation).
_hashing = ThreadPoolExecutor(
    max_workers=os.cpu_count() or 1, thread_name_prefix="bcrypt", initializer=_yield_to_event_loop
)


async def _off_loop(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, function, *args)


def _prehash(password: str) -> bytes:
    """base64(SHA-256(password)): 44 bytes, so bcrypt's 72-byte limit never truncates a password."""
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def _hash_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def _verify_sync(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash matches nothing
        return False


class PasswordHasher:
    """bcrypt off the event loop, with caps on the hashes each client address and each network may have
    queued or running.

    Hashing is the service's expensive resource: past `per_client` hashes from one address, or past the
    network's (`NetworkSlots`), a client is refused at once (RateLimited, retry in a second), and past
    `queue_max` hashes in this worker everyone is (Overloaded), so a storm never holds a request until its
    response timeout.
    """

    def __init__(
        self, *, rounds: int, per_client: int, queue_max: int, networks: NetworkSlots, enabled: bool = True
    ) -> None:
        self.rounds = rounds
        self.per_client = per_client
        self.queue_max = queue_max
        self.networks = networks
        self.enabled = enabled
        self._by_client: Counter[str] = Counter()
        self._queued = 0

    @property
    def queued(self) -> int:
        return self._queued

    async def hash(self, password: str, *, client: str) -> str:
        async with self._slot(client):
            return await _off_loop(_hash_sync, password, self.rounds)

    async def verify(self, password: str, password_hash: str | None, *, client: str) -> bool:
        """Check `password`; with no hash (unknown user) spend the same time on a dummy one."""
        async with self._slot(client):
            if password_hash is None:
                await _off_loop(_verify_sync, password, _dummy_hash(self.rounds))
                return False
            return await _off_loop(_verify_sync, password, password_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the stored hash has another cost than BCRYPT_ROUNDS (`$2b$<cost>$...`)."""
        return password_hash[4:6] != f"{self.rounds:02d}"

    async def warm_up(self) -> None:
        """Compute the dummy hash before the first login needs it."""
        await _off_loop(_dummy_hash, self.rounds)

    @contextlib.asynccontextmanager
    async def _slot(self, client: str) -> AsyncIterator[None]:
        """The client's slot is taken before any await, so concurrent requests always see it."""
        if self.enabled and self._by_client[client] >= self.per_client:
            metrics.HASH_REJECTED_PER_CLIENT.inc()
            raise RateLimited("Too many password checks from your address at once.", retry_after=1)
        self._by_client[client] += 1
        network_slot: NetworkSlot | None = None
        try:
            if self.enabled:
                network_slot = await self.networks.take(network_of(client))
                if network_slot is None:
                    metrics.HASH_REJECTED_PER_NETWORK.inc()
                    raise RateLimited("Too many password checks from your network at once.", retry_after=1)
                if self._queued >= self.queue_max:
                    metrics.HASH_REJECTED_QUEUE_FULL.inc()
                    raise Overloaded()
            self._queued += 1
            try:
                yield
            finally:
                self._queued -= 1
        finally:
            _count_down(self._by_client, client)
            if network_slot is not None:
                await self.networks.give_back(network_slot)


def network_of(client: str) -> str:
    """The network HASH_CONCURRENCY_PER_NETWORK counts `client` in; an unknown address is a network of its own."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    network = ipaddress.ip_network((address, NETWORK_PREFIX[address.version]), strict=False)
    return network.with_prefixlen


@dataclass(frozen=True, slots=True)
class NetworkSlot:
    """One hash's place in its network's count: in this process (no lease), or a lease in Redis."""

    network: str
    lease: str | None = None


# KEYS[1] the network's leases (a sorted set: token -> expiry, ms); ARGV[1] limit, ARGV[2] lease ms, ARGV[3] token
TAKE_SLOT_SCRIPT = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class NetworkSlots:
    """The hashes each network has queued or running, at most `limit` (HASH_CONCURRENCY_PER_NETWORK).

    Counted in this process, or with REDIS_URL in Redis for every worker and instance: a sorted set of
    leases per network (`{prefix}:hash-slots:{network}`), taken by one script that drops expired leases,
    counts and adds, and given back with ZREM. A lease ends by itself after SLOT_LEASE_MS, so a process that
    dies, or loses Redis, while hashing holds its network's slots no longer. While Redis is unavailable
    (`referral.redis_link`) slots are counted in this process.
    """

    def __init__(self, limit: int, redis: RedisLink | None = None) -> None:
        self.limit = limit
        self.redis = redis
        self._local: Counter[str] = Counter()
        self._take_lease = redis.client.register_script(TAKE_SLOT_SCRIPT) if redis is not None else None

    async def take(self, network: str) -> NetworkSlot | None:
        """A slot for one hash from `network`; None when the network has `limit` already."""
        if self.redis is not None and self._take_lease is not None and self.redis.up:
            lease = secrets.token_hex(8)
            try:
                taken = await self._take_lease(keys=[self._key(network)], args=[self.limit, SLOT_LEASE_MS, lease])
            except REDIS_ERRORS as error:
                self.redis.failed(error)
            else:
                return NetworkSlot(network, lease) if taken else None
        if self._local[network] >= self.limit:
            return None
        self._local[network] += 1
        return NetworkSlot(network)

    async def give_back(self, slot: NetworkSlot) -> None:
        if slot.lease is None:
            _count_down(self._local, slot.network)
            return
        assert self.redis is not None
        try:
            await self.redis.client.zrem(self._key(slot.network), slot.lease)
        except REDIS_ERRORS as error:
            self.redis.failed(error)  # the lease ends by itself

    def _key(self, network: str) -> str:
        assert self.redis is not None
        return f"{self.redis.prefix}:hash-slots:{network}"


def _count_down(counts: Counter[str], key: str) -> None:
    """One less for `key`, forgotten at zero: a flood of addresses leaves no counts behind."""
    if counts[key] > 1:
        counts[key] -= 1
    else:
        del counts[key]


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> str:
    return _hash_sync("not a real password", rounds)


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired or names no valid subject."""


@dataclass(frozen=True, slots=True)
class TokenSubject:
    user_id: int
    version: int


def issue_token(subject: TokenSubject, settings: Settings) -> str:
    now = utcnow()
    claims = {
        "sub": str(subject.user_id),
        "ver": subject.version,
        "iss": settings.service_name,
        "aud": settings.service_name,
        "iat": now,
        "exp": now + timedelta(seconds=settings.token_lifetime_seconds),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def read_token(token: str, settings: Settings) -> TokenSubject:
    """Whom the token was issued to, and at which of their token versions; InvalidToken for anything else."""
    if not token.isascii():  # a JWT is ASCII; other bytes arrive as undecodable surrogates
        raise InvalidToken("not a JWT")
    try:
        decoded = jwt.decode_complete(
            token,
            settings.secret_key,
            algorithms=[JWT_ALGORITHM],
            issuer=settings.service_name,
            audience=settings.service_name,
            options={"require": ["exp", "iat", "sub", "iss", "aud", "ver"]},
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from None
    if decoded["header"].get("typ", "JWT") != "JWT":
        raise InvalidToken("not a JWT (typ)")
    claims = decoded["payload"]
    subject, version = claims["sub"], claims["ver"]
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit() or len(subject) > 18:
        raise InvalidToken("bad subject")
    if type(version) is not int or not 0 <= version < 2**31:
        raise InvalidToken("bad version")
    return TokenSubject(int(subject), version)


class BadApiKey(ServiceError):
    """No `X-API-Key`, or not one of INTEGRATION_KEYS."""

    message = "An integration key is required: send one of INTEGRATION_KEYS in the X-API-Key header."


class IntegrationKeys:
    """INTEGRATION_KEYS, checked in constant time: `/integration/*`'s callers (the integrator's backend)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [key.encode() for key in keys]

    def caller(self, presented: str | None) -> str:
        """The caller's name for rate limiting and logs (`key-<n>`, never the key); BadApiKey when `presented`
        is none of the keys. Every key is compared, whichever matches, so timing tells nothing."""
        given = (presented or "").encode("utf-8", "surrogatepass")
        matched = [n for n, key in enumerate(self._keys, 1) if hmac.compare_digest(given, key)]
        if not presented or not matched:
            raise BadApiKey()
        return f"key-{matched[0]}"
