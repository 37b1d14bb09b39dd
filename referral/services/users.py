"""Accounts: registration, login and token subjects."""

from __future__ import annotations

from referral.config import Settings
from referral.db import users
from referral.db.database import ReferralDatabase
from referral.errors import BadCredentials, Conflict
from referral.ratelimit import RateLimits
from referral.security import hash_password, verify_password


class EmailTaken(Conflict):
    problem = "email-taken"
    message = "A user with this email already exists."


class UserService:
    def __init__(self, db: ReferralDatabase, settings: Settings, limits: RateLimits) -> None:
        self.db = db
        self.settings = settings
        self.limits = limits

    async def register(self, *, email: str, password: str) -> int:
        password_hash = await hash_password(password, rounds=self.settings.bcrypt_rounds)
        user_id = await users.insert_user(self.db, email=email, password_hash=password_hash)
        if user_id is None:
            raise EmailTaken()
        return user_id

    async def authenticate(self, *, email: str, password: str) -> int:
        """The user id for these credentials; one answer for an unknown email and a wrong password."""
        await self.limits.check_login(email)
        user = await users.get_user_by_email(self.db, email)
        stored_hash = user["password_hash"] if user is not None else None
        if not await verify_password(password, stored_hash, rounds=self.settings.bcrypt_rounds):
            await self.limits.record_failed_login(email)
            raise BadCredentials()
        assert user is not None
        return user["id"]

    async def exists(self, user_id: int) -> bool:
        return await users.user_exists(self.db, user_id)
