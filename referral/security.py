"""Passwords (bcrypt over a SHA-256 pre-hash, off the event loop) and JWT access tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterator
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

JWT_ALGORITHM = "HS256"
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
    """bcrypt off the event loop, with a cap on the hashes each client address may have queued or running.

    Hashing is the service's expensive resource: past `per_client` a client is refused at once
    (RateLimited, retry in a second), and past `queue_max` hashes in this worker everyone is
    (Overloaded), so a storm never holds a request until its response timeout.
    """

    def __init__(self, *, rounds: int, per_client: int, queue_max: int, enabled: bool = True) -> None:
        self.rounds = rounds
        self.per_client = per_client
        self.queue_max = queue_max
        self.enabled = enabled
        self._by_client: dict[str, int] = {}
        self._queued = 0

    @property
    def queued(self) -> int:
        return self._queued

    async def hash(self, password: str, *, client: str) -> str:
        with self._slot(client):
            return await _off_loop(_hash_sync, password, self.rounds)

    async def verify(self, password: str, password_hash: str | None, *, client: str) -> bool:
        """Check `password`; with no hash (unknown user) spend the same time on a dummy one."""
        with self._slot(client):
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

    @contextlib.contextmanager
    def _slot(self, client: str) -> Iterator[None]:
        if self.enabled:
            if self._by_client.get(client, 0) >= self.per_client:
                metrics.HASH_REJECTED_PER_CLIENT.inc()
                raise RateLimited("Too many password checks from your address at once.", retry_after=1)
            if self._queued >= self.queue_max:
                metrics.HASH_REJECTED_QUEUE_FULL.inc()
                raise Overloaded()
        self._by_client[client] = self._by_client.get(client, 0) + 1
        self._queued += 1
        try:
            yield
        finally:
            self._queued -= 1
            if (left := self._by_client[client] - 1) > 0:
                self._by_client[client] = left
            else:
                del self._by_client[client]


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
