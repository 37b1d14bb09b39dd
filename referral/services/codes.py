"""Referral codes: issuing, editing, expiry, deletion and lookup by email.

The rules live here. A user has at most one *live* code (not retired); it is *active* while its
expiry is in the future. Issuing a code retires the user's expired one in the same transaction,
and the database's partial unique index makes a second live code impossible.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta

from referral import metrics
from referral.cache import CodeCache
from referral.clock import utcnow
from referral.db import codes, users
from referral.db.database import ReferralDatabase
from referral.errors import ServiceError
from referral.services.models import CodeInfo
from referral.services.users import NotAuthenticated

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: easy to read aloud and type
GENERATED_CODE_LENGTH = 10  # 31**10 ≈ 2**49.5 codes
GENERATION_ATTEMPTS = 5


class CodeTaken(ServiceError):
    message = "This code is taken: codes are never reused, pick another."


class NoActiveCode(ServiceError):
    message = "There is no active referral code."


def generate_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(GENERATED_CODE_LENGTH))


def expiry_after(days: int, *, now: datetime) -> datetime:
    """Expiry `days` from `now`, to the whole second."""
    return (now + timedelta(days=days)).replace(microsecond=0)


def is_active(expires_at: datetime, *, now: datetime) -> bool:
    return expires_at > now


def code_status(expires_at: datetime, retired_at: datetime | None, *, now: datetime) -> str:
    """ "deleted" for a code retired while it was still valid (deleted, or replaced by a new custom code),
    "expired" once its expiry passed (retired when the next one was issued, or not yet), else "active"."""
    if retired_at is not None and retired_at < expires_at:
        return "deleted"
    return "active" if is_active(expires_at, now=now) else "expired"


class Keep(enum.Enum):
    """`update_code` without `max_uses`: the active code keeps its limit."""

    LIMIT = "keep"


KEEP = Keep.LIMIT


class CodeService:
    def __init__(self, db: ReferralDatabase, cache: CodeCache) -> None:
        self.db = db
        self.cache = cache

    async def issue_or_edit(
        self, user_id: int, *, days: int, custom_code: str | None, max_uses: int | Keep | None = KEEP
    ) -> tuple[CodeInfo, bool]:
        """Extend the user's active code, or issue a new one. Returns the code and whether it is new.

        `max_uses`: KEEP (not given) keeps the active code's limit, and issues without one; a number or
        None (no limit) replaces it. A new custom code on an edit carries the limit over, with its own
        count of uses from 0. A limit below the uses made leaves the code used up.
        """
        now = utcnow()
        expires_at = expiry_after(days, now=now)
        async with self.db.transaction():
            owner = await users.lock_user(self.db, user_id)
            if owner is None or owner["deleted_at"] is not None:  # deleted since its token was checked
                raise NotAuthenticated("The user of this token no longer exists.")
            live = await codes.get_live_code(self.db, user_id)
            active = live is not None and is_active(live["expires_at"], now=now)
            if isinstance(max_uses, Keep):
                max_uses = live["max_uses"] if active else None
            if active and (custom_code is None or custom_code == live["code"]):
                await codes.edit_code(self.db, live, expires_at=expires_at, max_uses=max_uses, now=now)
                result, created = CodeInfo(user_id, live["code"], expires_at, max_uses), False
            else:
                if live is not None:
                    await codes.retire_code(self.db, live["id"], now=now)
                code = await self._insert_new(user_id, custom_code, expires_at=expires_at, max_uses=max_uses, now=now)
                result, created = CodeInfo(user_id, code, expires_at, max_uses), True
        await self.cache.invalidate(owner["email"])
        return result, created

    async def _insert_new(
        self, user_id: int, custom_code: str | None, *, expires_at: datetime, max_uses: int | None, now: datetime
    ) -> str:
        candidates = [custom_code] if custom_code else [generate_code() for _ in range(GENERATION_ATTEMPTS)]
        for candidate in candidates:
            inserted = await codes.insert_code(
                self.db, user_id=user_id, code=candidate, expires_at=expires_at, max_uses=max_uses, now=now
            )
            if inserted is not None:
                return candidate
        if custom_code:
            raise CodeTaken()
        raise RuntimeError("could not generate an unused referral code")

    async def delete(self, user_id: int) -> CodeInfo:
        """Retire the user's active code (its history stays) and return it."""
        now = utcnow()
        async with self.db.transaction():
            owner = await users.lock_user(self.db, user_id)
            if owner is None or owner["deleted_at"] is not None:  # deleted since its token was checked
                raise NotAuthenticated("The user of this token no longer exists.")
            live = await codes.get_live_code(self.db, user_id)
            if live is None or not is_active(live["expires_at"], now=now):
                raise NoActiveCode("You have no active referral code to delete.")
            await codes.delete_code(self.db, live, now=now)
        await self.cache.invalidate(owner["email"])
        return CodeInfo(user_id, live["code"], live["expires_at"], live["max_uses"])

    async def find_by_email(self, email: str) -> CodeInfo:
        """The active code of the user with this email (cached)."""
        cached = await self.cache.get(email)
        if cached is not None:
            metrics.cache_hit()
            return cached
        metrics.cache_miss()
        ticket = await self.cache.fill_ticket(email)
        row = await codes.get_active_code_by_email(self.db, email, now=utcnow())
        if row is None:
            raise NoActiveCode("No active referral code for this email.")
        info = CodeInfo(row["user_id"], row["code"], row["expires_at"], row["max_uses"])
        await self.cache.put(email, info, ticket=ticket)
        return info
