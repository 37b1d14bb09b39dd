"""Mail through the outbox (SPEC "Account lifecycle"): recorded in the caller's transaction, sent after the
commit to a real SMTP server (tests/smtp.py), retried on a refused connection or a 4xx, failed at once on
a 5xx, dropped when expired, its body erased once sent or failed; `console` prints it to stderr."""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases.interfaces import Record

from referral.clock import utcnow
from referral.config import warn_if_insecure
from referral.db.database import ReferralDatabase
from referral.db.tables import outbox_delivery, outbox_event
from referral.outbox.commands import status
from referral.outbox.mail import EXPIRED, ConsoleMail, Mail, SmtpMail, build_message
from referral.outbox.record import record_mail
from referral.outbox.webhooks import Attempt
from tests.conftest import settings_on
from tests.live import LiveClient
from tests.smtp import WAIT_SECONDS, SmtpServer
from tests.support import self_signed

SENDER = "referral@service.example"
RETRY_QUICKLY = {"webhook_retry_schedule": "500ms,500ms,500ms"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def a_mail(**changes: object) -> Mail:
    fields: dict = {"to": "bob@example.com", "subject": "Hello", "text": "Hello Bob,\nyour link: https://x/?t=SECRET\n"}
    return Mail(**(fields | changes))


async def record(db: ReferralDatabase, mail: Mail) -> int:
    """Record `mail` in a transaction of its own, as a request would: its delivery's id."""
    async with db.transaction():
        await record_mail(db, mail, now=utcnow())
    d = outbox_delivery.c
    return await db.fetch_val(sa.select(sa.func.max(d.id)).where(d.channel == "mail"))


async def delivery(db: ReferralDatabase, delivery_id: int) -> Record:
    query = (
        sa.select(outbox_delivery, outbox_event.c.payload)
        .join(outbox_event, outbox_event.c.id == outbox_delivery.c.event_id)
        .where(outbox_delivery.c.id == delivery_id)
    )
    row = await db.fetch_one(query)
    assert row is not None
    return row


def wait_for_delivery(client: LiveClient, delivery_id: int, done: Callable[[Record], bool]) -> Record:
    db = client.app.ctx.db

    async def wait() -> Record:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                if done(row := await delivery(db, delivery_id)):
                    return row
                await asyncio.sleep(0.05)

    return client.run(wait())


def test_a_message_leaves_after_the_commit_with_its_headers_and_its_body_is_erased(serve_app, smtp):
    client: LiveClient = serve_app(mail_url=smtp.url, mail_from=SENDER)
    before = utcnow()
    delivery_id = client.run(record(client.app.ctx.db, a_mail()))
    [message] = client.run(smtp.wait_for(1))
    assert (message["From"], message["To"], message["Subject"]) == (SENDER, "bob@example.com", "Hello")
    assert before - timedelta(seconds=2) <= parsedate_to_datetime(message["Date"]) <= utcnow()
    assert message["Message-ID"].endswith("@service.example>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == a_mail().text  # SMTP carries CRLF line ends
    row = wait_for_delivery(client, delivery_id, lambda row: row.state == "delivered")
    assert (row.attempts, row.payload) == (1, "")


def test_a_message_waits_for_a_server_that_is_down_and_arrives_once_it_is_back(serve_app):
    smtp = SmtpServer()  # not started: connections are refused
    client: LiveClient = serve_app(mail_url=smtp.url, **RETRY_QUICKLY)
    delivery_id = client.run(record(client.app.ctx.db, a_mail()))
    row = wait_for_delivery(client, delivery_id, lambda row: row.attempts >= 1)
    assert row.state == "pending"
    assert row.payload != ""
    smtp.start()
    try:
        [message] = client.run(smtp.wait_for(1))
        assert message["To"] == "bob@example.com"
        row = wait_for_delivery(client, delivery_id, lambda row: row.state == "delivered")
        assert row.payload == ""
    finally:
        smtp.stop()


def test_a_4xx_is_tried_again(serve_app, smtp):
    smtp.refuse_with = "451 4.3.0 try again later"
    client: LiveClient = serve_app(mail_url=smtp.url, **RETRY_QUICKLY)
    delivery_id = client.run(record(client.app.ctx.db, a_mail()))
    row = wait_for_delivery(client, delivery_id, lambda row: row.attempts >= 1)
    assert (row.state, row.last_status) == ("pending", 451)
    smtp.refuse_with = None
    client.run(smtp.wait_for(1))
    row = wait_for_delivery(client, delivery_id, lambda row: row.state == "delivered")
    assert row.attempts >= 2


def test_a_5xx_fails_at_once_and_erases_the_body(serve_app, smtp):
    smtp.refuse_with = "550 5.1.1 no such mailbox"
    client: LiveClient = serve_app(mail_url=smtp.url, **RETRY_QUICKLY)
    delivery_id = client.run(record(client.app.ctx.db, a_mail()))
    row = wait_for_delivery(client, delivery_id, lambda row: row.state == "failed")
    assert (row.attempts, row.last_status, row.payload) == (1, 550, "")
    assert smtp.messages() == []


def test_an_expired_message_is_dropped_unsent(serve_app, smtp):
    client: LiveClient = serve_app(mail_url=smtp.url)
    expired = a_mail(expires_at=utcnow() - timedelta(seconds=1))
    delivery_id = client.run(record(client.app.ctx.db, expired))
    row = wait_for_delivery(client, delivery_id, lambda row: row.state == "failed")
    assert (row.attempts, row.last_error, row.payload) == (1, EXPIRED, "")
    assert smtp.messages() == []


def test_console_prints_the_whole_message_to_stderr(capfd: pytest.CaptureFixture[str]):
    mail = a_mail()
    channel = ConsoleMail(SENDER)
    outcome = asyncio.run(channel.send(Attempt(1, "msg_x", mail.payload(), mail.to, 0, "mail")))
    assert outcome.delivered
    printed = capfd.readouterr().err
    expected = build_message(mail, sender=SENDER, now=utcnow())
    for header in ("From", "To", "Subject"):
        assert f"{header}: {expected[header]}" in printed
    assert "Date: " in printed
    assert "Message-ID: " in printed
    assert mail.text in printed


def test_console_mail_is_warned_about_at_start(caplog: pytest.LogCaptureFixture, tmp_path):
    settings = settings_on(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    with caplog.at_level(logging.WARNING, logger="referral.config"):
        warn_if_insecure(settings)
    assert ["MAIL_URL is console" in record.getMessage() for record in caplog.records] == [True]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="referral.config"):
        warn_if_insecure(settings.with_overrides(mail_url="smtp://127.0.0.1:2525"))
    assert caplog.records == []


def test_webhooks_status_counts_mail_on_one_line_without_recipients(serve_app):
    client: LiveClient = serve_app(mail_url=SmtpServer().url, webhook_retry_schedule="1h")  # nothing listens
    db = client.app.ctx.db
    client.run(record(db, a_mail()))
    client.run(record(db, a_mail(to="carol@example.com")))
    out = io.StringIO()
    client.run(status(db, out))
    [line] = out.getvalue().splitlines()
    assert line.startswith("mail  pending 2  delivered 0  failed 0")
    assert "@" not in line


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted certificate", "unknown certificate"])
def test_starttls_is_used_when_offered_and_its_certificate_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    """A server offering STARTTLS (and refusing mail without it) gets the message over TLS when its
    certificate is trusted, and nothing when it is not."""
    certificate, key = self_signed(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # OpenSSL's default trust store, for this test
    server = SmtpServer(tls=context)
    server.start()
    try:
        channel = SmtpMail(f"smtp://localhost:{server.port}", SENDER, timeout=10)
        outcome = asyncio.run(channel.transmit(build_message(a_mail(), sender=SENDER, now=utcnow())))
    finally:
        server.stop()
    if trusted:
        assert outcome.delivered, outcome.error
        assert [message["Subject"] for message in server.messages()] == ["Hello"]
    else:
        assert not outcome.delivered
        assert "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")
        assert server.messages() == []
