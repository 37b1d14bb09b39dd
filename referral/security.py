"""Passwords (bcrypt over a SHA-256 pre-hash, off the event loop) and JWT access tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

import bcrypt
import jwt

from referral.clock import utcnow
from referral.config import Settings

JWT_ALGORITHM = "HS256"
HASHING_NICENESS = 10
T = TypeVar("T")


def _yield_to_event_loop() -> None:
    """Run this hashing thread at a lower priority (Linux keeps a nice value per thread).

    A login storm then takes only the CPU the event loop leaves over, instead of an equal share of
    it per hashing thread: other requests keep their latency (see bench/RESULTS.md, isolation).
    """
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: plain threads
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


# bcrypt is CPU-bound and releases the GIL: more threads than cores would only queue for the CPU.
_hashing = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="bcrypt", initializer=_yield_to_event_loop
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


async def hash_password(password: str, *, rounds: int) -> str:
    return await _off_loop(_hash_sync, password, rounds)


async def verify_password(password: str, password_hash: str | None, *, rounds: int) -> bool:
    """Check `password`; with no hash (unknown user) spend the same time on a dummy one."""
    if password_hash is None:
        await _off_loop(_verify_sync, password, _dummy_hash(rounds))
        return False
    return await _off_loop(_verify_sync, password, password_hash)


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> str:
    return _hash_sync("not a real password", rounds)


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired or names no valid subject."""


def issue_token(user_id: int, settings: Settings) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "iss": settings.service_name,
        "iat": now,
        "exp": now + timedelta(seconds=settings.token_lifetime_seconds),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def read_token(token: str, settings: Settings) -> int:
    """The user id the token was issued to; raises InvalidToken for anything else."""
    if not token.isascii():  # a JWT is ASCII; other bytes arrive as undecodable surrogates
        raise InvalidToken("not a JWT")
    try:
        claims = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[JWT_ALGORITHM],
            issuer=settings.service_name,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from None
    subject = claims["sub"]
    if not subject.isascii() or not subject.isdigit() or len(subject) > 18:
        raise InvalidToken("bad subject")
    return int(subject)


async def warm_up(rounds: int) -> None:
    """Compute the dummy hash before the first login needs it."""
    await _off_loop(_dummy_hash, rounds)
