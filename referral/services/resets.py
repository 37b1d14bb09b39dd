"""Forgotten passwords: a one-time token emailed as a link, traded for a new password.

A request answers alike for every email (no account enumeration) and runs the same statements: it
counts the request for the canonical mailbox (`password_reset`, keyed by an HMAC, never the address) and,
for an account within MESSAGES_PER_HOUR, replaces the token and records the message in the same
transaction, which the outbox sends after the commit (`referral.outbox.mail`); otherwise it records the
same outbox rows, finished at once, to nobody. Only the token's SHA-256 is kept; it expires
after RESET_TOKEN_TTL seconds and works once. A reset ends every token issued before, as a password
change does.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from referral.clock import utcnow
from referral.config import Settings
from referral.db import resets
from referral.db.database import ReferralDatabase
from referral.db.users import end_sessions
from referral.errors import ServiceError
from referral.logs import security_event
from referral.outbox.mail import Mail
from referral.security import PasswordHasher, TokenSubject, issue_token
from referral.services.mailboxes import canonical_mailbox
from referral.services.models import SignedIn
from referral.services.passwords import check_new_password

TOKEN_BYTES = 32
MESSAGES_PER_HOUR = 3  # per canonical mailbox; past it the answer is the same and no message is sent
MAILBOX_KEY_CONTEXT = b"referral reset-request mailbox\x00"
SUBJECT = "Reset your password"


class InvalidResetToken(ServiceError):
    message = "This reset link is unknown, already used or expired: ask for a new one."


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordResets:
    def __init__(self, db: ReferralDatabase, settings: Settings, hasher: PasswordHasher) -> None:
        self.db = db
        self.settings = settings
        self.hasher = hasher

    def mailbox_key(self, email: str) -> str:
        """An HMAC of the canonical mailbox under SECRET_KEY: counts requests without keeping the address."""
        mailbox = canonical_mailbox(email)
        return hmac.new(self.settings.secret_key.encode(), MAILBOX_KEY_CONTEXT + mailbox.encode(), "sha256").hexdigest()

    async def request(self, email: str) -> None:
        """Email a reset link to the account with `email`, if there is one and its mailbox is within the limit.

        The same statements run for every email (a token made, the request counted, two outbox rows), so
        neither the answer nor its time tells whether an account exists."""
        now = utcnow()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + timedelta(seconds=self.settings.reset_token_ttl)
        async with self.db.transaction():
            user_id = await resets.account_to_reset(self.db, email)
            requests = await resets.record_request(
                self.db,
                self.mailbox_key(email),
                user_id=user_id,
                token_hash=token_hash(token),
                expires_at=expires_at,
                messages_per_window=MESSAGES_PER_HOUR,
                now=now,
            )
            sent = user_id is not None and requests <= MESSAGES_PER_HOUR
            if sent:
                mail = Mail(email, SUBJECT, self.message_text(email, token), expires_at=expires_at)
                await resets.record_message(self.db, mail, now=now)
            else:
                await resets.record_no_message(self.db, now=now)
        if user_id is not None:
            security_event("password_reset_requested", level=logging.INFO, user_id=user_id, message_sent=sent)

    def message_text(self, email: str, token: str) -> str:
        minutes = max(1, self.settings.reset_token_ttl // 60)
        link = self.settings.reset_url.replace("{token}", token)
        return (
            f"Someone, hopefully you, asked to reset the password of the {self.settings.service_name} account "
            f"of {email}.\n\n"
            f"To choose a new password, open this link within {minutes} minute{'s' if minutes > 1 else ''}; "
            f"it works once:\n\n{link}\n\n"
            "If you did not ask, ignore this message: your password stays as it is.\n"
        )

    async def reset(self, token: str, *, new_password: str, client: str) -> SignedIn:
        """Trade a live token for a new password: every token issued before ends; a fresh one is returned.

        The token is checked first (InvalidResetToken), then the password rules (PasswordRefused, and the
        token stays usable); the token is spent in the transaction that stores the new hash."""
        hashed = token_hash(token)
        owner = await resets.token_owner(self.db, hashed, now=utcnow())
        if owner is None:
            security_event("password_reset_refused", client=client)
            raise InvalidResetToken()
        check_new_password(new_password, email=owner["email"], field="new_password")
        new_hash = await self.hasher.hash(new_password, client=client)
        async with self.db.transaction():
            user_id = await resets.use_token(self.db, hashed, now=utcnow())
            version = None if user_id is None else await end_sessions(self.db, user_id, password_hash=new_hash)
        if user_id is None or version is None:  # spent meanwhile by a concurrent reset, or expired
            raise InvalidResetToken()
        security_event("password_reset", level=logging.INFO, user_id=user_id, client=client)
        subject = TokenSubject(user_id, version)
        return SignedIn(user_id, issue_token(subject, self.settings), self.settings.token_lifetime_seconds)
