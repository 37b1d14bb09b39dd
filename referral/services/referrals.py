"""Referrals: registering with a code (optionally as a full user), a referrer's list and stats, an account's
export of everything stored about it, and the integrator's qualification of a referral."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from referral.clock import utcnow
from referral.db import codes, referrals, users
from referral.db.database import ReferralDatabase
from referral.errors import InvalidField, ServiceError
from referral.security import PasswordHasher
from referral.services.codes import code_status, is_active
from referral.services.mailboxes import canonical_mailbox, erased_mailbox_key
from referral.services.models import (
    AccountExport,
    CodeInfo,
    CodeUsage,
    ExportedCode,
    ExportedReferral,
    IntegrationReferral,
    ReferralInfo,
    ReferralPage,
    ReferredBy,
    ReferrerStats,
)
from referral.services.passwords import check_new_password
from referral.services.users import EmailTaken, NotAuthenticated


class UnknownCode(ServiceError):
    message = "No referral code like this exists."


class CodeNotActive(ServiceError):
    message = "This referral code has expired or was deleted."


class AlreadyReferred(ServiceError):
    message = "This email (or another address of the same mailbox) is already registered as a referral."


class CodeExhausted(ServiceError):
    message = "This referral code was used up: it reached its limit of uses."


class UnknownReferral(ServiceError):
    message = "No referral with this id exists."


class SelfReferral(InvalidField):
    message = "You cannot register with your own referral code."
    field = "email"

    def __init__(self) -> None:
        super().__init__(reason="is a mailbox of the code's owner")


class ReferralService:
    def __init__(self, db: ReferralDatabase, hasher: PasswordHasher, *, secret_key: str) -> None:
        self.db = db
        self.hasher = hasher
        self.secret_key = secret_key  # keys erased mailboxes (`erased_mailbox_key`)

    async def register(self, *, email: str, code: str, password: str | None, client: str) -> ReferralInfo:
        """Record `email` as referred by `code`; with a password it also becomes a user.

        One referral per canonical mailbox, and none from a mailbox of the code's owner. Always reads
        the database (never the code cache): a code deleted a moment ago is refused.
        """
        password_hash = None
        if password is not None:
            check_new_password(password, email=email)
            password_hash = await self.hasher.hash(password, client=client)
        mailbox = canonical_mailbox(email)
        now = utcnow()
        async with self.db.transaction():
            used = await codes.get_code_for_use(self.db, code)
            if used is None:
                raise UnknownCode()
            if used["retired_at"] is not None or not is_active(used["expires_at"], now=now):
                raise CodeNotActive()
            if canonical_mailbox(used["owner_email"]) == mailbox:
                raise SelfReferral()
            if await referrals.mailbox_was_erased(self.db, erased_mailbox_key(mailbox, self.secret_key)):
                raise AlreadyReferred()
            if not await codes.use_code(self.db, used["id"]):
                raise CodeExhausted()
            new_user_id = None
            if password_hash is not None:
                new_user_id = await users.insert_user(
                    self.db, email=email, password_hash=password_hash, referrer_id=used["user_id"]
                )
                if new_user_id is None:
                    raise EmailTaken()
            referral_id = await referrals.insert_referral(
                self.db,
                email=email,
                mailbox=mailbox,
                code_id=used["id"],
                code=used["code"],
                referrer_id=used["user_id"],
                user_id=new_user_id,
                now=now,
            )
            if referral_id is None:
                raise AlreadyReferred()
            await referrals.count_one_more(self.db, referrer_id=used["user_id"])
        code_info = CodeInfo(used["user_id"], used["code"], used["expires_at"], used["max_uses"])
        return ReferralInfo(referral_id, email, code_info)

    async def list_for(self, referrer_id: int, *, limit: int, offset: int) -> ReferralPage:
        """One page of the referrer's referrals, oldest first, with the total count."""
        rows = await referrals.list_referrals(self.db, referrer_id=referrer_id, limit=limit, offset=offset)
        total = rows[0]["total"] if rows else await referrals.count_referrals(self.db, referrer_id=referrer_id)
        items = [
            ReferralInfo(
                row["id"],
                row["email"],
                CodeInfo(row["user_id"], row["code"], row["expires_at"]),
                row["status"],
                row["qualified_at"],
            )
            for row in rows
        ]
        return ReferralPage(items, total)

    async def stats_for(self, user_id: int) -> ReferrerStats:
        """The referrer's totals (from the counters kept with each registration and qualification) and every
        code they were issued, newest first: its time does not grow with the number of referrals."""
        total, qualified = await referrals.counts_of(self.db, referrer_id=user_id)
        now = utcnow()
        usage = [code_usage(row, now=now) for row in await codes.codes_of_user(self.db, user_id)]
        return ReferrerStats(total, qualified, usage)

    async def export(self, user_id: int) -> AccountExport:
        """Everything stored about the account: itself, every code it was issued with its uses, the referrals
        its codes registered and the referral it came from. Never its password hash or reset token."""
        account = await users.account_of(self.db, user_id)
        if account is None:
            raise NotAuthenticated("The user of this token no longer exists.")
        now = utcnow()
        exported_codes = [
            ExportedCode(
                code_usage(row, now=now),
                row["created_at"],
            )
            for row in await codes.codes_of_user(self.db, user_id)
        ]
        made = [
            ExportedReferral(
                row["id"], row["email"], row["code"], row["status"], row["qualified_at"], row["created_at"]
            )
            for row in await referrals.referrals_made_by(self.db, user_id)
        ]
        came_from = await referrals.referral_of(self.db, user_id=user_id, email=account["email"])
        referred_by = (
            None
            if came_from is None
            else ReferredBy(came_from["code"], came_from["referrer_id"], came_from["created_at"])
        )
        return AccountExport(user_id, account["email"], account["created_at"], exported_codes, made, referred_by)

    async def qualify(self, referral_id: int, *, reference: str | None) -> IntegrationReferral:
        """Mark the referral qualified (a conversion the integrator reports); idempotent: a referral qualified
        before keeps its first time and reference, and `referral.qualified` is recorded once."""
        async with self.db.transaction():
            await referrals.qualify(self.db, referral_id, reference=reference, now=utcnow())
            row = await referrals.get_for_integration(self.db, referral_id)
        if row is None:
            raise UnknownReferral()
        return integration_referral(row)

    async def list_all(self, *, after_id: int, limit: int, status: str | None) -> list[IntegrationReferral]:
        rows = await referrals.list_for_integration(self.db, after_id=after_id, limit=limit, status=status)
        return [integration_referral(row) for row in rows]


def code_usage(row: Mapping[str, Any], *, now: datetime) -> CodeUsage:
    """A code row (`codes.codes_of_user`) with its status at `now`, as stats and export show it."""
    status = code_status(row["expires_at"], row["retired_at"], now=now)
    return CodeUsage(row["code"], row["expires_at"], status, row["uses"], row["max_uses"])


def integration_referral(row: Mapping[str, Any]) -> IntegrationReferral:
    return IntegrationReferral(
        row["id"],
        row["email"],
        row["code"],
        row["referrer_id"],
        row["status"],
        row["qualified_at"],
        row["reference"],
    )
