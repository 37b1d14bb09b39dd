"""Referrals: registering with a code (optionally as a full user) and a referrer's list."""

from __future__ import annotations

from referral.clock import utcnow
from referral.config import Settings
from referral.db import codes, referrals, users
from referral.db.database import ReferralDatabase
from referral.errors import InvalidField, ServiceError
from referral.security import hash_password
from referral.services.codes import is_active
from referral.services.models import CodeInfo, ReferralInfo, ReferralPage
from referral.services.users import EmailTaken


class UnknownCode(ServiceError):
    message = "No referral code like this exists."


class CodeNotActive(ServiceError):
    message = "This referral code has expired or was deleted."


class AlreadyReferred(ServiceError):
    message = "This email is already registered as a referral."


class SelfReferral(InvalidField):
    message = "You cannot register with your own referral code."
    field = "email"

    def __init__(self) -> None:
        super().__init__(reason="is the email of the code's owner")


class ReferralService:
    def __init__(self, db: ReferralDatabase, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def register(self, *, email: str, code: str, password: str | None) -> ReferralInfo:
        """Record `email` as referred by `code`; with a password it also becomes a user.

        Always reads the database (never the code cache): a code deleted a moment ago is refused.
        """
        password_hash = (
            await hash_password(password, rounds=self.settings.bcrypt_rounds) if password is not None else None
        )
        now = utcnow()
        async with self.db.transaction():
            used = await codes.get_code_for_use(self.db, code)
            if used is None:
                raise UnknownCode()
            if used["retired_at"] is not None or not is_active(used["expires_at"], now=now):
                raise CodeNotActive()
            if used["owner_email"] == email:
                raise SelfReferral()
            new_user_id = None
            if password_hash is not None:
                new_user_id = await users.insert_user(self.db, email=email, password_hash=password_hash)
                if new_user_id is None:
                    raise EmailTaken()
            referral_id = await referrals.insert_referral(
                self.db,
                email=email,
                code_id=used["id"],
                referrer_id=used["user_id"],
                user_id=new_user_id,
                now=now,
            )
            if referral_id is None:
                raise AlreadyReferred()
            await referrals.count_one_more(self.db, referrer_id=used["user_id"])
        return ReferralInfo(referral_id, email, CodeInfo(used["user_id"], used["code"], used["expires_at"]))

    async def list_for(self, referrer_id: int, *, limit: int, offset: int) -> ReferralPage:
        """One page of the referrer's referrals, oldest first, with the total count."""
        async with self.db.session():
            rows = await referrals.list_referrals(self.db, referrer_id=referrer_id, limit=limit, offset=offset)
            total = await referrals.count_referrals(self.db, referrer_id=referrer_id)
        items = [
            ReferralInfo(row["id"], row["email"], CodeInfo(row["user_id"], row["code"], row["expires_at"]))
            for row in rows
        ]
        return ReferralPage(items, total)
