"""Accounts: registration, sign-in and the users that tokens name."""

from __future__ import annotations

from referral.config import Settings
from referral.db import users
from referral.db.database import ReferralDatabase
from referral.errors import ServiceError
from referral.ratelimit import RateLimits
from referral.security import InvalidToken, hash_password, issue_token, read_token, verify_password
from referral.services.models import SignedIn


class EmailTaken(ServiceError):
    message = "A user with this email already exists."


class BadCredentials(ServiceError):
    message = "Wrong email or password."


class NotAuthenticated(ServiceError):
    message = "Authentication is required: send a valid token in the Authorization header."


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

    async def sign_in(self, *, email: str, password: str) -> SignedIn:
        """A token for these credentials; one answer for an unknown email and a wrong password."""
        await self.limits.check_login(email)
        user = await users.get_user_by_email(self.db, email)
        stored_hash = user["password_hash"] if user is not None else None
        if not await verify_password(password, stored_hash, rounds=self.settings.bcrypt_rounds):
            await self.limits.record_failed_login(email)
            raise BadCredentials()
        assert user is not None
        return SignedIn(user["id"], issue_token(user["id"], self.settings), self.settings.token_lifetime_seconds)

    async def user_of_token(self, token: str | None) -> int:
        """The id of the user the token was issued to, while that user exists."""
        if not token:
            raise NotAuthenticated()
        try:
            user_id = read_token(token, self.settings)
        except InvalidToken:
            raise NotAuthenticated("The token is invalid or expired.") from None
        if not await users.user_exists(self.db, user_id):
            raise NotAuthenticated("The user of this token no longer exists.")
        return user_id
