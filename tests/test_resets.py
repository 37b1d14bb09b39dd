"""Forgotten passwords (SPEC "Account lifecycle"): the reset link read out of a message a real SMTP server
received (tests/smtp.py), the same answer for unknown emails, tokens stored as SHA-256 only, used once,
expiring, replaced by a newer one, the limits per mailbox and per address, and a mail server that is down."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import httpx
import pytest
import sqlalchemy as sa

from referral.api.contract import RESET_REQUESTED
from referral.db.tables import outbox_delivery, outbox_event, password_reset
from referral.outbox.mail import EXPIRED
from referral.outbox.record import NO_RECIPIENT
from tests.factories import Factory, User, login
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.smtp import SmtpServer

RESET_PAGE = "https://app.example/reset?token="
LINK = re.compile(re.escape(RESET_PAGE) + r"([A-Za-z0-9_-]+)")
NEW_PASSWORD = "a-new-and-better-passphrase"
ACCEPTED = {"detail": RESET_REQUESTED}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mailing(serve_app: Callable[..., LiveClient]) -> Callable[..., LiveClient]:
    """Serve the app sending mail to `smtp` (a started or stopped SmtpServer), with `changes`."""

    def start(smtp: SmtpServer, **changes: object) -> LiveClient:
        return serve_app(mail_url=smtp.url, reset_url=RESET_PAGE + "{token}", **changes)

    return start


def forgot(client: LiveClient, email: str) -> httpx.Response:
    return client.post("/user/password/forgot", json={"email": email})


def reset(client: LiveClient, token: str, new_password: str = NEW_PASSWORD) -> httpx.Response:
    return client.post("/user/password/reset", json={"token": token, "new_password": new_password})


def token_in(message: EmailMessage) -> str:
    """The token of the reset link in the message's text."""
    text = message.get_content()
    assert isinstance(text, str)
    found = LINK.search(text)
    assert found, text
    return found[1]


def emailed_token(client: LiveClient, smtp: SmtpServer, user: User, count: int = 1) -> str:
    """Ask for a reset of `user` and read the token out of the message that arrives (the `count`th)."""
    assert forgot(client, user.email).status_code == 202
    message = client.run(smtp.wait_for(count))[count - 1]
    assert message["To"] == user.email
    return token_in(message)


def rows(client: LiveClient, table: sa.Table) -> list[dict]:
    return [dict(row._mapping) for row in client.run(client.app.ctx.db.fetch_all(sa.select(table)))]


def mail_deliveries(client: LiveClient) -> list[dict]:
    query = sa.select(outbox_delivery, outbox_event.c.payload).join(
        outbox_event, outbox_event.c.id == outbox_delivery.c.event_id
    )
    query = query.where(outbox_delivery.c.channel == "mail").order_by(outbox_delivery.c.id)
    return [dict(row._mapping) for row in client.run(client.app.ctx.db.fetch_all(query))]


def wait_for_mail(client: LiveClient, done: Callable[[dict], bool]) -> dict:
    """The first mail delivery once `done(row)` (the app's loop runs meanwhile)."""
    db = client.app.ctx.db
    query = sa.select(outbox_delivery).where(outbox_delivery.c.channel == "mail").order_by(outbox_delivery.c.id)

    async def reached() -> dict:
        async with asyncio.timeout(15):
            while True:
                row = await db.fetch_one(query)
                if row is not None and done(found := dict(row._mapping)):
                    return found
                await asyncio.sleep(0.05)

    return client.run(reached())


def test_a_forgotten_password_is_reset_with_the_emailed_link(mailing, smtp):
    client = mailing(smtp, mail_from="accounts@service.example")
    user = Factory(client).user()
    answer = forgot(client, user.email.upper())
    assert (answer.status_code, answer.json()) == (202, ACCEPTED)
    [message] = client.run(smtp.wait_for(1))
    assert (message["From"], message["To"]) == ("accounts@service.example", user.email)
    assert message["Subject"] == "Reset your password"
    assert all(message[header] for header in ("Date", "Message-ID"))
    reset_answer = reset(client, token_in(message))
    assert reset_answer.status_code == 200, reset_answer.text
    assert reset_answer.headers["cache-control"] == "no-store"
    fresh = reset_answer.json()
    assert fresh["user_id"] == user.id
    assert client.get("/refer/stats", headers={"authorization": fresh["token"]}).status_code == 200
    assert_problem(client.get("/refer/stats", headers=user.auth), 401)  # every older token ended
    assert login(client, user.email, NEW_PASSWORD).status_code == 200
    assert_problem(login(client, user.email, user.password), 401)


def test_only_the_tokens_sha256_is_kept_and_it_works_once(mailing, smtp):
    client = mailing(smtp)
    user = Factory(client).user()
    token = emailed_token(client, smtp, user)
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    [stored] = rows(client, password_reset)
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(rows(client, password_reset))
    wait_for_mail(client, lambda row: row["state"] == "delivered")
    assert mail_deliveries(client)[0]["payload"] == ""  # the sent message's body is erased
    assert reset(client, token).status_code == 200
    used = assert_problem(reset(client, token, "yet-another-passphrase"), 400)
    unknown = assert_problem(reset(client, "no-such-token"), 400)
    assert used == unknown
    assert [row["token_hash"] for row in rows(client, password_reset)] == [None]


def test_unknown_emails_get_the_same_answer_and_the_same_request_count(mailing, smtp):
    client = mailing(smtp)
    user = Factory(client).user()
    known = forgot(client, user.email)
    unknown = forgot(client, "nobody-here@example.com")
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json()) == (202, ACCEPTED)
    assert unknown.headers["content-type"] == known.headers["content-type"]
    stored = rows(client, password_reset)
    assert sorted(row["requests"] for row in stored) == [1, 1]
    assert all("@" not in row["mailbox_key"] for row in stored)
    assert sorted(row["user_id"] is None for row in stored) == [False, True]
    deliveries = mail_deliveries(client)
    assert len(deliveries) == 2  # the same outbox rows for both: one message, one to nobody
    assert (deliveries[1]["destination"], deliveries[1]["last_error"], deliveries[1]["payload"]) == (
        "",
        NO_RECIPIENT,
        "",
    )
    client.run(smtp.wait_for(1))
    time.sleep(0.5)
    assert len(smtp.messages()) == 1


def test_a_newer_request_replaces_the_older_token(mailing, smtp):
    client = mailing(smtp)
    user = Factory(client).user()
    older = emailed_token(client, smtp, user, count=1)
    newer = emailed_token(client, smtp, user, count=2)
    assert older != newer
    assert_problem(reset(client, older), 400)
    assert reset(client, newer).status_code == 200


def test_an_expired_token_is_refused_like_an_unknown_one(mailing, smtp):
    client = mailing(smtp, reset_token_ttl=2)  # the message leaves within about a second of the commit
    user = Factory(client).user()
    token = emailed_token(client, smtp, user)
    time.sleep(2.1)
    expired = assert_problem(reset(client, token), 400)
    assert expired == assert_problem(reset(client, "no-such-token"), 400)
    assert login(client, user.email, user.password).status_code == 200


def test_a_refused_new_password_is_422_and_the_token_still_works(mailing, smtp):
    client = mailing(smtp)
    user = Factory(client).user()
    token = emailed_token(client, smtp, user)
    refused = assert_problem(reset(client, token, "password1"), 422)
    assert set(refused["errors"]) == {"new_password"}
    too_short = assert_problem(reset(client, token, "short"), 422)
    assert set(too_short["errors"]) == {"new_password"}
    assert reset(client, token).status_code == 200


def test_the_token_is_checked_before_the_password_rules(mailing, smtp):
    client = mailing(smtp)
    assert_problem(reset(client, "no-such-token", "password1"), 400)


def test_at_most_three_messages_an_hour_per_mailbox(mailing, smtp):
    client = mailing(smtp)
    Factory(client).user(email="carol@example.com")
    emails = ("carol@example.com", "Carol@Example.com", "carol@example.com", "carol+x@example.com", "carol@example.com")
    answers = [forgot(client, email) for email in emails]
    assert {(answer.status_code, answer.text) for answer in answers} == {(202, answers[0].text)}
    assert [row["requests"] for row in rows(client, password_reset)] == [5]  # one canonical mailbox
    assert [row["destination"] != "" for row in mail_deliveries(client)] == [True, True, True, False, False]
    third = client.run(smtp.wait_for(3))[2]
    assert reset(client, token_in(third)).status_code == 200  # the requests past the limit replaced nothing


def test_the_per_address_limit_applies(mailing, smtp):
    client = mailing(smtp, rate_limit=True, rate_limit_ip="2/minute")
    assert forgot(client, "a@example.com").status_code == 202
    assert forgot(client, "b@example.com").status_code == 202
    assert_problem(forgot(client, "c@example.com"), 429)
    assert_problem(reset(client, "some-token"), 400)
    assert_problem(reset(client, "some-token"), 400)
    assert_problem(reset(client, "some-token"), 429)


def test_the_answer_does_not_wait_for_a_mail_server_that_is_down(mailing):
    smtp = SmtpServer()  # not started: connections are refused
    client = mailing(smtp, webhook_retry_schedule="500ms,500ms,500ms,500ms")
    user = Factory(client).user()
    assert forgot(client, user.email).status_code == 202
    refused = wait_for_mail(client, lambda row: row["attempts"] >= 1)
    assert refused["state"] == "pending"
    smtp.start()
    try:
        [message] = client.run(smtp.wait_for(1))
        assert reset(client, token_in(message)).status_code == 200
    finally:
        smtp.stop()


def test_a_reset_message_whose_token_expired_is_dropped_unsent(mailing):
    smtp = SmtpServer()  # down at the first attempt; up again only once the token has expired
    client = mailing(smtp, reset_token_ttl=1, webhook_retry_schedule="2s")
    user = Factory(client).user()
    assert forgot(client, user.email).status_code == 202
    client.run(asyncio.sleep(1.2))
    smtp.start()
    try:
        delivery = wait_for_mail(client, lambda row: row["state"] == "failed")
        assert delivery["last_error"] == EXPIRED
        assert smtp.messages() == []
    finally:
        smtp.stop()
