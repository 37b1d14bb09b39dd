"""Accounts: registration, sign-in, sessions (logout, password change) and the users tokens name.

Every token carries the user's token version at issue; logout and a password change raise it, so
every token issued until then stops working, while one issued after works at once.
"""

from __future__ import annotations

import logging

from referral import metrics
from referral.cache import CodeCache
from referral.clock import utcnow
from referral.config import Settings
from referral.db import codes, referrals, resets, users
from referral.db.database import ReferralDatabase
from referral.errors import Overloaded, RateLimited, ServiceError
from referral.logs import email_hash, security_event
from referral.ratelimit import RateLimits
from referral.security import InvalidToken, PasswordHasher, TokenSubject, issue_token, read_token
from referral.services.mailboxes import canonical_mailbox, erased_mailbox_key
from referral.services.models import SignedIn
from referral.services.passwords import check_new_password


class EmailTaken(ServiceError):
    message = "A user with this email already exists."


class BadCredentials(ServiceError):
    message = "Wrong email or password."


class NotAuthenticated(ServiceError):
    message = "Authentication is required: send a valid token in the Authorization header."


class WrongPassword(ServiceError):
    message = "The current password is wrong."


class UserService:
    def __init__(
        self, db: ReferralDatabase, settings: Settings, limits: RateLimits, hasher: PasswordHasher, cache: CodeCache
    ) -> None:
        self.db = db
        self.settings = settings
        self.limits = limits
        self.hasher = hasher
        self.cache = cache

    async def register(self, *, email: str, password: str, client: str) -> int:
        check_new_password(password, email=email)
        password_hash = await self.hasher.hash(password, client=client)
        async with self.db.transaction():  # the user and its `user.registered` event
            user_id = await users.insert_user(self.db, email=email, password_hash=password_hash)
        if user_id is None:
            raise EmailTaken()
        return user_id

    async def sign_in(self, *, email: str, password: str, client: str) -> SignedIn:
        """A token for these credentials; one answer for an unknown email and a wrong password."""
        await self._take_login_attempt(email, client)
        user = await users.get_user_by_email(self.db, email)
        stored_hash = user["password_hash"] if user is not None else None
        if not await self._verify(password, stored_hash, email=email, client=client):
            security_event("login_failed", email_hash=self._email_hash(email), client=client)
            raise BadCredentials()
        assert user is not None
        assert stored_hash is not None
        await self.limits.give_back_login_attempt(email, client)
        if self.hasher.needs_rehash(stored_hash):  # keeps the dummy-hash timing equal for every account
            new_hash = await self.hasher.hash(password, client=client)
            await users.replace_password_hash(self.db, user["id"], old_hash=stored_hash, new_hash=new_hash)
        return self._signed_in(TokenSubject(user["id"], user["token_version"]))

    async def user_of_token(self, token: str | None) -> int:
        """The id of the user the token was issued to, while that user exists and the token is not revoked."""
        if not token:
            security_event("token_refused", level=logging.INFO, reason="missing")
            raise NotAuthenticated()
        try:
            subject = read_token(token, self.settings)
        except InvalidToken as error:
            security_event("token_refused", reason=f"invalid: {error}")
            raise NotAuthenticated("The token is invalid or expired.") from None
        version = await users.token_version(self.db, subject.user_id)
        if version is None:
            security_event("token_refused", reason="user no longer exists", user_id=subject.user_id)
            raise NotAuthenticated("The user of this token no longer exists.")
        if version != subject.version:
            security_event("token_refused", reason="revoked", user_id=subject.user_id)
            raise NotAuthenticated("The token was revoked (logout or password change): sign in again.")
        return subject.user_id

    async def log_out(self, user_id: int) -> None:
        """End every token of the user issued until now."""
        if await users.end_sessions(self.db, user_id) is None:
            raise NotAuthenticated("The user of this token no longer exists.")
        security_event("logout", level=logging.INFO, user_id=user_id)

    async def change_password(self, user_id: int, *, current: str, new: str, client: str) -> SignedIn:
        """Replace the password (a wrong current one counts as a failed login) and end every older token."""
        user = await users.get_user(self.db, user_id)
        if user is None:
            raise NotAuthenticated("The user of this token no longer exists.")
        check_new_password(new, email=user["email"], field="new_password")
        await self._take_login_attempt(user["email"], client)
        if not await self._verify(current, user["password_hash"], email=user["email"], client=client):
            raise WrongPassword()
        await self.limits.give_back_login_attempt(user["email"], client)
        new_hash = await self.hasher.hash(new, client=client)
        version = await users.end_sessions(self.db, user_id, password_hash=new_hash)
        if version is None:
            raise NotAuthenticated("The user of this token no longer exists.")
        security_event("password_changed", level=logging.INFO, user_id=user_id, client=client)
        return self._signed_in(TokenSubject(user_id, version))

    async def delete_account(self, user_id: int, *, password: str, client: str) -> None:
        """Delete the account (a wrong password counts as a failed login): its codes retired, its tokens ended,
        its email erased from every row and from the outbox; the row stays as a tombstone.

        The user's row is locked first, as update_code locks it, so a concurrent update_code either commits
        its code before (then retired here) or finds the tombstone; a concurrent login's token carries the
        version this raises."""
        user = await users.get_user(self.db, user_id)
        if user is None or user["email"] is None:
            raise NotAuthenticated("The user of this token no longer exists.")
        email = user["email"]
        await self._take_login_attempt(email, client)
        if not await self.hasher.verify(password, user["password_hash"], client=client):
            security_event("login_failed", email_hash=self._email_hash(email), client=client, reason="account deletion")
            raise WrongPassword()
        await self.limits.give_back_login_attempt(email, client)
        now = utcnow()
        erased = erased_mailbox_key(canonical_mailbox(email), self.settings.secret_key)
        async with self.db.transaction():
            locked = await users.lock_user(self.db, user_id)
            if locked is None or locked["deleted_at"] is not None:
                raise NotAuthenticated("The user of this token no longer exists.")
            await codes.retire_codes_of(self.db, user_id, now=now)
            await referrals.erase_referral_of(self.db, user_id=user_id, email=email, erased_mailbox=erased)
            await resets.forget_token(self.db, user_id)
            await users.make_tombstone(self.db, user_id, email=email, now=now)
        await self.cache.invalidate(email)
        security_event("account_deleted", level=logging.INFO, user_id=user_id, client=client)

    async def _take_login_attempt(self, email: str, client: str) -> None:
        try:
            await self.limits.take_login_attempt(email, client)
        except RateLimited:
            metrics.rate_limited("login")
            security_event("login_locked_out", email_hash=self._email_hash(email), client=client)
            raise

    async def _verify(self, password: str, password_hash: str | None, *, email: str, client: str) -> bool:
        """The hasher's answer; a check it refused (its caps: 429, 503) gives the login attempt back unused."""
        try:
            return await self.hasher.verify(password, password_hash, client=client)
        except (RateLimited, Overloaded):
            await self.limits.give_back_login_attempt(email, client)
            raise

    def _email_hash(self, email: str) -> str:
        return email_hash(email, self.settings.secret_key)

    def _signed_in(self, subject: TokenSubject) -> SignedIn:
        token = issue_token(subject, self.settings)
        return SignedIn(subject.user_id, token, self.settings.token_lifetime_seconds)
