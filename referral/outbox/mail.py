"""The mail channel: one plain-text message to one recipient, through SMTP or printed to stderr.

A message is recorded in the outbox like an event (`referral.outbox.record.record_mail`): its payload is
the `Mail` as JSON, its delivery's destination the recipient. The delivery loop attempts it after the
commit and retries it on the webhooks' schedule; once it is sent or failed the payload (which may hold a
reset token) is erased (`referral.outbox.delivery`). A message whose `expires_at` has passed is dropped
unsent: a reset link that no longer works is not worth sending.

MAIL_URL picks the transport: `smtp://` (STARTTLS when the server offers it) and `smtps://` (TLS from the
first byte) through aiosmtplib, or `console`, which writes each message whole to stderr, outside the
logging pipeline (log lines never carry emails or tokens). SMTP's answers decide the outcome: a refused
connection, a timeout or a 4xx is retried, a 5xx fails at once.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import orjson

from referral.clock import utcnow
from referral.config import Settings
from referral.outbox.webhooks import MAX_ERROR_LENGTH, Attempt, Outcome

MAIL_CHANNEL = "mail"
SMTP_PORT = 25
SMTPS_PORT = 465
EXPIRED = "expired before it could be sent: dropped"


@dataclass(frozen=True)
class Mail:
    """A message to send: what the outbox keeps until it is sent (`expires_at`: drop it after)."""

    to: str
    subject: str
    text: str
    expires_at: datetime | None = None

    def payload(self) -> str:
        body: dict[str, Any] = {"to": self.to, "subject": self.subject, "text": self.text}
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.isoformat()
        return orjson.dumps(body).decode()

    @classmethod
    def from_payload(cls, payload: str) -> Mail:
        body = orjson.loads(payload)
        expires_at = body.get("expires_at")
        return cls(
            body["to"], body["subject"], body["text"], datetime.fromisoformat(expires_at) if expires_at else None
        )


def sender_domain(sender: str) -> str:
    return sender.rpartition("@")[2]


def build_message(mail: Mail, *, sender: str, now: datetime) -> EmailMessage:
    """The message as sent: From, To, Subject, Date and Message-ID, plain text in UTF-8."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender_domain(sender))  # a domain given: no DNS lookup
    message.set_content(mail.text)
    return message


class MailChannel:
    """The base of both transports: decodes the attempt, drops an expired message, builds the message."""

    name = MAIL_CHANNEL

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, attempt: Attempt) -> Outcome:
        try:
            mail = Mail.from_payload(attempt.payload)
        except (ValueError, KeyError, TypeError) as error:
            return Outcome(False, error=f"unreadable message: {type(error).__name__}", final=True)
        now = utcnow()
        if mail.expires_at is not None and mail.expires_at <= now:
            return Outcome(False, error=EXPIRED, final=True)
        return await self.transmit(build_message(mail, sender=self.sender, now=now))

    async def transmit(self, message: EmailMessage) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class ConsoleMail(MailChannel):
    """MAIL_URL=console: each message written whole to stderr (the start warns that none is sent)."""

    async def transmit(self, message: EmailMessage) -> Outcome:
        text = f"----- mail (MAIL_URL=console: not sent) -----\n{message.as_string()}\n----- end of mail -----\n"
        await asyncio.to_thread(write_to_stderr, text)
        return Outcome(True)


def write_to_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class SmtpMail(MailChannel):
    """MAIL_URL=smtp:// or smtps://: one connection per message, within WEBHOOK_TIMEOUT."""

    def __init__(self, url: str, sender: str, *, timeout: float) -> None:
        super().__init__(sender)
        parts = urlsplit(url)
        self.use_tls = parts.scheme == "smtps"
        self.hostname = parts.hostname or "localhost"
        self.port = parts.port or (SMTPS_PORT if self.use_tls else SMTP_PORT)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    async def transmit(self, message: EmailMessage) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(
                    message,
                    hostname=self.hostname,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.use_tls,
                    start_tls=False if self.use_tls else None,  # None: STARTTLS when the server offers it
                    local_hostname=sender_domain(self.sender),  # else aiosmtplib asks the resolver (blocking)
                    timeout=self.timeout,
                )
        except TimeoutError:
            return Outcome(False, error=f"timed out after {self.timeout:g} s")
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [recipient.code for recipient in refused.recipients]
            return smtp_answer(min(codes) if codes else 550, "recipient refused")
        except aiosmtplib.SMTPResponseException as error:
            return smtp_answer(error.code, error.message)
        except (aiosmtplib.SMTPException, OSError) as error:
            return Outcome(False, error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH])
        return Outcome(True)


def smtp_answer(code: int, message: str) -> Outcome:
    """An SMTP refusal: a 5xx fails at once, anything else is tried again."""
    return Outcome(False, status=code, error=f"SMTP {code}: {message}"[:MAX_ERROR_LENGTH], final=500 <= code < 600)


def mail_channel(settings: Settings) -> MailChannel:
    """The channel MAIL_URL names, sending from MAIL_FROM."""
    if settings.mail_url == "console":
        return ConsoleMail(settings.mail_from)
    return SmtpMail(settings.mail_url, settings.mail_from, timeout=settings.webhook_timeout)
