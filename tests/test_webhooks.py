"""Webhook delivery end to end, on both databases: a real receiver verifies every signature.

Events are inserted here with SQLAlchemy Core (`add_event`), independent of the recording code, and the
delivery loop of a live app sends them to `Receiver`, an HTTP server on 127.0.0.1 in a thread of its own
that answers what the test plans (a status, a redirect, a hang, a closed connection).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.util
import inspect
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from databases.interfaces import Record
from standardwebhooks import Webhook
from standardwebhooks.exceptions import WebhookVerificationError

from referral.clock import utcnow
from referral.config import Settings
from referral.db.database import ReferralDatabase, create_database
from referral.db.tables import outbox_delivery, outbox_event
from referral.outbox import commands
from referral.outbox.delivery import Deliveries
from referral.outbox.webhooks import Attempt, Outcome, WebhookChannel, is_forbidden
from tests.factories import Factory
from tests.live import LiveClient
from tests.support import running_server, self_signed, server_env

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
WAIT_SECONDS = 20.0  # generous: only a bound on a test that would otherwise hang, never a latency check


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answer: int | str


class Receiver:
    """A minimal HTTP/1.1 server: each request is recorded (with its signature checked) and answered by the
    next item of `plan` (then `default`): an int status, "redirect" (302 to /elsewhere), "hang" (no answer
    until the client gives up), "slow" (204 after half a second) or "close" (the connection closed unanswered)."""

    def __init__(self, secret: str, tls: ssl.SSLContext | None = None) -> None:
        self.webhook = Webhook(secret)
        self.tls = tls
        self.plan: list[int | str] = []
        self.default: int | str = 204
        self.received: list[Received] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shut(self) -> None:
        self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    self.webhook.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                answer = self.plan.pop(0) if self.plan else self.default
                self.received.append(Received(path, headers, body, verified, answer))
                if answer == "hang":
                    await reader.read()  # until the client closes
                    return
                if answer == "close":
                    return
                if answer == "slow":
                    await asyncio.sleep(0.5)
                    answer = 204
                if answer == "redirect":
                    writer.write(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(f"HTTP/1.1 {answer} Answer\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    yield server
    server.close()


def webhook_settings(receiver: Receiver, **changes: Any) -> dict[str, Any]:
    return {
        "webhook_urls": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allow_private": True,
        "webhook_retry_schedule": "100ms,200ms,300ms",
        "webhook_timeout": 1,
        **changes,
    }


async def add_event(
    db: ReferralDatabase,
    destination: str,
    *,
    kind: str = "referral.registered",
    created_at: datetime | None = None,
    **delivery: Any,
) -> str:
    """Insert an event and its webhook delivery (due now unless `delivery` says otherwise), as recording
    would: the event's id."""
    event_id = f"msg_{uuid.uuid4()}"
    now = created_at or utcnow()
    payload = json.dumps({"type": kind, "timestamp": now.isoformat(), "data": {"id": 1, "email": "a@example.com"}})
    async with db.transaction():
        await db.execute(outbox_event.insert().values(event_id=event_id, type=kind, payload=payload, created_at=now))
        row_id = await db.fetch_val(sa.select(outbox_event.c.id).where(outbox_event.c.event_id == event_id))
        values = {"channel": "webhook", "destination": destination, "next_attempt_at": now, **delivery}
        await db.execute(outbox_delivery.insert().values(event_id=row_id, **values))
    return event_id


async def delivery_of(db: ReferralDatabase, event_id: str) -> Record:
    query = (
        sa.select(outbox_delivery, outbox_event.c.payload)
        .join(outbox_event, outbox_event.c.id == outbox_delivery.c.event_id)
        .where(outbox_event.c.event_id == event_id)
    )
    row = await db.fetch_one(query)
    assert row is not None
    return row


async def wait_until(check: Callable[[], Any]) -> None:
    """Poll `check` (sync or async) until it is true; fail after WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


def wait_for_state(client: LiveClient, event_id: str, state: str) -> Record:
    db = client.app.ctx.db

    async def reached() -> bool:
        return (await delivery_of(db, event_id)).state == state

    client.run(wait_until(reached))
    return client.run(delivery_of(db, event_id))


def attempts_counted(client: LiveClient, result: str) -> float:
    """referral_webhook_deliveries_total for `result`, as /metrics shows it (0 before the first)."""
    prefix = f'referral_webhook_deliveries_total{{result="{result}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


def send(client: LiveClient, receiver: Receiver) -> str:
    event_id = client.run(add_event(client.app.ctx.db, receiver.url))
    assert client.app.ctx.deliveries is not None
    client.app.ctx.deliveries.nudge()
    return event_id


def test_an_event_is_delivered_signed_with_its_stored_payload(serve_app: Any, receiver: Receiver) -> None:
    client: LiveClient = serve_app(**webhook_settings(receiver))
    delivered_before = attempts_counted(client, "delivered")
    event_id = send(client, receiver)
    row = wait_for_state(client, event_id, "delivered")
    assert (row.attempts, row.last_status, row.lease_until) == (1, 204, None)
    assert row.finished_at is not None
    [got] = receiver.received
    assert got.verified
    assert got.path == "/hook"
    assert got.headers["webhook-id"] == event_id
    assert got.body.decode() == row.payload
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert attempts_counted(client, "delivered") == delivered_before + 1
    metrics = client.get("/metrics").text
    assert SECRET not in metrics
    assert SECRET.removeprefix("whsec_") not in metrics


def test_the_api_s_changes_reach_the_receiver_signed_once_each_and_refusals_send_nothing(
    serve_app: Any, receiver: Receiver
) -> None:
    """End to end: each change the API makes is recorded with it and delivered (tests/test_events.py checks
    the payloads in the tables); a refused request adds nothing."""
    client: LiveClient = serve_app(**webhook_settings(receiver))
    make = Factory(client)
    referrer = make.user()
    code = make.code(referrer)["code"]
    make.code(referrer, day=9)
    make.referral(code, password="a-fine-passphrase")
    assert (
        client.post("/user/register", json={"email": referrer.email, "password": "x-fine-passphrase"}).status_code
        == 409
    )
    assert client.delete("/refer/delete", headers=referrer.auth).status_code == 200
    expected = [
        "user.registered",
        "code.issued",
        "code.updated",
        "user.registered",
        "referral.registered",
        "code.deleted",
    ]
    client.run(wait_until(lambda: len(receiver.received) >= len(expected)))
    client.run(asyncio.sleep(0.3))  # nothing more arrives
    assert all(got.verified for got in receiver.received)
    assert sorted(json.loads(got.body)["type"] for got in receiver.received) == sorted(expected)
    assert len({got.headers["webhook-id"] for got in receiver.received}) == len(expected)


def test_retries_then_success_keep_the_webhook_id(serve_app: Any, receiver: Receiver) -> None:
    receiver.plan = [500, "close"]
    client: LiveClient = serve_app(**webhook_settings(receiver))
    event_id = send(client, receiver)
    row = wait_for_state(client, event_id, "delivered")
    assert row.attempts == 3
    assert [got.headers["webhook-id"] for got in receiver.received] == [event_id] * 3
    assert all(got.verified for got in receiver.received)


def test_a_delivery_fails_after_the_last_retry(
    serve_app: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = 500
    client: LiveClient = serve_app(**webhook_settings(receiver))
    failed_before, retried_before = attempts_counted(client, "failed"), attempts_counted(client, "retried")
    event_id = send(client, receiver)
    row = wait_for_state(client, event_id, "failed")
    assert (row.attempts, row.last_status) == (4, 500)  # the first attempt and three retries
    assert row.finished_at is not None
    assert len(receiver.received) == 4
    assert attempts_counted(client, "failed") == failed_before + 1
    assert attempts_counted(client, "retried") == retried_before + 3
    failures = [record.getMessage() for record in caplog.records if record.name == "referral.outbox"]
    assert len(failures) == 4  # a line per failed attempt: event id, endpoint host, status
    assert all(event_id in line and "127.0.0.1" in line and "status 500" in line for line in failures)
    assert not any(SECRET.removeprefix("whsec_") in record.getMessage() for record in caplog.records)


def test_a_hanging_receiver_times_out_and_is_retried_while_the_api_answers(serve_app: Any, receiver: Receiver) -> None:
    receiver.plan = ["hang"]
    client: LiveClient = serve_app(**webhook_settings(receiver))
    event_id = send(client, receiver)
    client.run(wait_until(lambda: receiver.received))
    assert client.get("/health").status_code == 200  # while the attempt is held open
    row = wait_for_state(client, event_id, "delivered")
    assert row.attempts == 2
    assert len(receiver.received) == 2


def test_redirects_are_not_followed(serve_app: Any, receiver: Receiver) -> None:
    receiver.default = "redirect"
    client: LiveClient = serve_app(**webhook_settings(receiver))
    event_id = send(client, receiver)
    row = wait_for_state(client, event_id, "failed")
    assert row.last_status == 302
    assert {got.path for got in receiver.received} == {"/hook"}


def test_private_addresses_are_refused_by_default(serve_app: Any, receiver: Receiver) -> None:
    client: LiveClient = serve_app(**webhook_settings(receiver, webhook_allow_private=False))
    event_id = send(client, receiver)
    row = wait_for_state(client, event_id, "failed")
    assert "refused address" in row.last_error
    assert row.last_status is None
    assert receiver.received == []


def test_deliveries_to_a_removed_endpoint_fail_at_start(serve_app: Any, receiver: Receiver, settings: Settings) -> None:
    async def add_old() -> str:
        db = create_database(settings)
        await db.connect()
        try:
            return await add_event(db, "http://127.0.0.1:9/removed")
        finally:
            await db.disconnect()

    old = asyncio.run(add_old())
    client: LiveClient = serve_app(**webhook_settings(receiver))
    row = wait_for_state(client, old, "failed")
    assert (row.last_error, row.attempts) == ("endpoint removed", 0)
    assert row.finished_at is not None
    assert receiver.received == []


def test_the_retention_sweep_deletes_only_events_finished_long_ago(serve_app: Any, receiver: Receiver) -> None:
    client: LiveClient = serve_app(**webhook_settings(receiver, event_retention_days=3))
    db = client.app.ctx.db
    long_ago = utcnow() - timedelta(days=5)
    later = utcnow() + timedelta(days=1)
    old_done = client.run(add_event(db, receiver.url, created_at=long_ago, state="delivered", finished_at=long_ago))
    old_failed = client.run(add_event(db, receiver.url, created_at=long_ago, state="failed", finished_at=long_ago))
    old_pending = client.run(add_event(db, receiver.url, created_at=long_ago, next_attempt_at=later))
    recent = client.run(add_event(db, receiver.url, created_at=long_ago, state="failed", finished_at=utcnow()))
    assert client.app.ctx.deliveries is not None
    client.run(client.app.ctx.deliveries.sweep())  # the loop's sweep at start may have taken some already
    left = client.run(db.fetch_all(sa.select(outbox_event.c.event_id)))
    assert {row.event_id for row in left} == {old_pending, recent}
    assert old_done not in {row.event_id for row in left}
    assert old_failed not in {row.event_id for row in left}
    remaining = client.run(db.fetch_val(sa.select(sa.func.count()).select_from(outbox_delivery)))
    assert remaining == 2


def test_status_retry_and_ping_commands(receiver: Receiver, settings: Settings) -> None:
    webhooks = settings.with_overrides(**webhook_settings(receiver))

    async def scenario() -> tuple[str, str, int, str, str]:
        db = create_database(webhooks)
        await db.connect()
        try:
            failed = await add_event(db, receiver.url, state="failed", attempts=4, finished_at=utcnow())
            await add_event(db, receiver.url, next_attempt_at=utcnow() + timedelta(days=1))
            before, queued, pinged, after = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
            await commands.run("status", webhooks, before)
            await commands.run("retry", webhooks, queued)
            status = await commands.run("ping", webhooks, pinged)
            await commands.run("status", webhooks, after)
            row = await delivery_of(db, failed)
            assert (row.state, row.attempts, row.finished_at) == ("pending", 0, None)
            return before.getvalue(), queued.getvalue(), status, pinged.getvalue(), after.getvalue()
        finally:
            await db.disconnect()

    before, queued, status, pinged, after = asyncio.run(scenario())
    assert f"{receiver.url}  pending 1  delivered 0  failed 1" in before
    assert queued.startswith("1 failed deliveries queued again")
    assert status == 0
    assert f"{receiver.url}  ok  status 204" in pinged
    [ping] = receiver.received
    assert ping.verified
    assert json.loads(ping.body)["type"] == "webhook.ping"
    assert f"{receiver.url}  pending 2  delivered 0  failed 0" in after
    assert SECRET.removeprefix("whsec_") not in before + queued + pinged + after


def test_an_expired_lease_is_claimed_again_and_a_live_one_is_not(serve_app: Any, receiver: Receiver) -> None:
    client: LiveClient = serve_app(**webhook_settings(receiver))
    db = client.app.ctx.db
    now = utcnow()
    # A worker killed mid-attempt leaves its lease: once it expires, another worker (or this one) retries.
    expired = client.run(add_event(db, receiver.url, lease_until=now - timedelta(seconds=1)))
    held = client.run(add_event(db, receiver.url, lease_until=now + timedelta(days=1)))
    assert wait_for_state(client, expired, "delivered").attempts == 1
    client.run(asyncio.sleep(1.5))  # more than a poll: the loop has looked at the held one too
    assert client.run(delivery_of(db, held)).state == "pending"
    assert {got.headers["webhook-id"] for got in receiver.received} == {expired}


def test_the_outbox_gauges_count_pending_deliveries(serve_app: Any, receiver: Receiver) -> None:
    client: LiveClient = serve_app(**webhook_settings(receiver))
    db = client.app.ctx.db
    an_hour_ago = utcnow() - timedelta(hours=1)
    later = utcnow() + timedelta(days=1)
    for _ in range(2):
        client.run(add_event(db, receiver.url, created_at=an_hour_ago, next_attempt_at=later))
    assert client.app.ctx.deliveries is not None
    client.run(client.app.ctx.deliveries.read_gauges())
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("referral_outbox_")
    }
    assert samples["referral_outbox_pending"] == 2
    assert samples["referral_outbox_oldest_pending_seconds"] >= 3600


def test_stopping_lets_an_attempt_in_flight_finish_and_leaves_the_rest_pending(
    serve_app: Any, receiver: Receiver
) -> None:
    receiver.plan = ["hang"]
    client: LiveClient = serve_app(**webhook_settings(receiver, webhook_timeout=30))
    event_id = send(client, receiver)
    client.run(wait_until(lambda: receiver.received))
    deliveries = client.app.ctx.deliveries
    assert deliveries is not None
    client.run(deliveries.stop(grace=0.2))  # the attempt hangs past the grace: cancelled
    row = client.run(delivery_of(client.app.ctx.db, event_id))
    assert (row.state, row.attempts) == ("pending", 0)
    assert row.lease_until is not None  # leased until it expires: then any worker retries it


def test_stopping_waits_for_an_attempt_in_flight_within_the_grace(serve_app: Any, receiver: Receiver) -> None:
    receiver.plan = ["slow"]
    client: LiveClient = serve_app(**webhook_settings(receiver))
    event_id = send(client, receiver)
    client.run(wait_until(lambda: receiver.received))
    deliveries = client.app.ctx.deliveries
    assert deliveries is not None
    client.run(deliveries.stop(grace=WAIT_SECONDS))
    assert client.run(delivery_of(client.app.ctx.db, event_id)).state == "delivered"


def test_a_receiver_down_for_a_while_then_up_gets_the_backlog(serve_app: Any, receiver: Receiver) -> None:
    receiver.default = 503
    client: LiveClient = serve_app(**webhook_settings(receiver, webhook_retry_schedule="300ms,1s,2s,5s"))
    db = client.app.ctx.db
    events = [client.run(add_event(db, receiver.url)) for _ in range(12)]

    async def all_tried() -> bool:
        return all([(await delivery_of(db, event_id)).attempts >= 1 for event_id in events])

    client.run(wait_until(all_tried))
    receiver.default = 204
    for event_id in events:
        wait_for_state(client, event_id, "delivered")
    assert all(got.verified for got in receiver.received)


def test_an_attempt_cut_by_kill_9_is_made_again_after_a_restart(
    receiver: Receiver, settings: Settings, tmp_path: Path
) -> None:
    """The service dies (SIGKILL) while the receiver holds an attempt open; once restarted, the lease runs
    out (WEBHOOK_TIMEOUT + 10 s) and the event arrives, with the same webhook-id."""
    receiver.plan = ["hang"]
    webhooks = settings.with_overrides(**webhook_settings(receiver))

    async def insert() -> str:
        db = create_database(webhooks)
        await db.connect()
        try:
            return await add_event(db, receiver.url)
        finally:
            await db.disconnect()

    async def state_of(event_id: str) -> str:
        db = create_database(webhooks)
        await db.connect()
        try:
            return (await delivery_of(db, event_id)).state
        finally:
            await db.disconnect()

    env = server_env(
        DATABASE_URL=settings.database_url,
        DB_SCHEMA=settings.db_schema,
        WORKERS="1",
        RATE_LIMIT="off",
        WEBHOOK_URLS=receiver.url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_ALLOW_PRIVATE="on",
        WEBHOOK_TIMEOUT="1",
        WEBHOOK_RETRY_SCHEDULE="100ms,200ms,300ms",
    )
    event_id = asyncio.run(insert())
    with running_server(env, cwd=tmp_path, log=tmp_path / "first.log") as (_, process):
        deadline = time.monotonic() + WAIT_SECONDS
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.received, (tmp_path / "first.log").read_text()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert asyncio.run(state_of(event_id)) == "pending"
    with running_server(env, cwd=tmp_path, log=tmp_path / "second.log"):
        deadline = time.monotonic() + 30  # the lease: WEBHOOK_TIMEOUT + 10 s from the first claim
        while asyncio.run(state_of(event_id)) != "delivered":
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()
            time.sleep(0.2)
    assert len(receiver.received) >= 2
    assert {got.headers["webhook-id"] for got in receiver.received} == {event_id}
    assert all(got.verified for got in receiver.received)


@pytest.mark.postgres_only
def test_two_instances_of_two_workers_deliver_every_event_once_but_where_an_attempt_was_cut(
    receiver: Receiver, settings: Settings, tmp_path: Path
) -> None:
    """Two services of two workers each on one PostgreSQL database, 200 referrals sent to both: every event
    reaches the receiver, and an id arrives twice only where the receiver cut an attempt (closed the connection
    unanswered, so the sender retried)."""
    receiver.plan = ["close"] * 5
    shared = {
        "DATABASE_URL": settings.database_url,
        "DB_SCHEMA": settings.db_schema,
        "WORKERS": "2",
        "RATE_LIMIT": "off",
        "WEBHOOK_URLS": receiver.url,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOW_PRIVATE": "on",
        "WEBHOOK_TIMEOUT": "2",
        "WEBHOOK_RETRY_SCHEDULE": "100ms,200ms,300ms",
    }
    with (
        running_server(server_env(**shared), cwd=tmp_path, log=tmp_path / "one.log") as (one, _),
        running_server(server_env(**shared), cwd=tmp_path, log=tmp_path / "other.log") as (other, _),
        httpx.Client(base_url=one) as first,
        httpx.Client(base_url=other) as second,
    ):
        code = Factory(first).code(Factory(first).user())["code"]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: Factory((first, second)[n % 2]).referral(code), range(200)))

        async def recorded() -> set[str]:
            db = create_database(settings)
            await db.connect()
            try:
                return {row.event_id for row in await db.fetch_all(sa.select(outbox_event.c.event_id))}
            finally:
                await db.disconnect()

        events = asyncio.run(recorded())
        assert len(events) == 2 + 200  # the referrer and its code, then each referral
        deadline = time.monotonic() + WAIT_SECONDS
        while len({got.headers["webhook-id"] for got in receiver.received if got.answer == 204}) < len(events):
            assert time.monotonic() < deadline, (tmp_path / "one.log").read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more arrives
    answered = [got.headers["webhook-id"] for got in receiver.received if got.answer == 204]
    cut = [got.headers["webhook-id"] for got in receiver.received if got.answer == "close"]
    assert sorted(answered) == sorted(events)  # each event answered once
    assert len(cut) == 5
    assert set(cut) <= events
    assert all(got.verified for got in receiver.received)


class Idle:
    """A channel that is never asked to send: the claiming tests only lease rows."""

    name = "webhook"

    async def send(self, attempt: Attempt) -> Outcome:
        raise AssertionError("not sent in this test")

    async def close(self) -> None:
        return None


def test_two_claimers_at_once_lease_each_delivery_once(receiver: Receiver, settings: Settings) -> None:
    webhooks = settings.with_overrides(**webhook_settings(receiver))

    async def scenario() -> tuple[list[int], list[int], int]:
        db = create_database(webhooks)
        await db.connect()
        try:
            for _ in range(20):
                await add_event(db, receiver.url)
            first, second = Deliveries(db, webhooks, {"webhook": Idle()}), Deliveries(db, webhooks, {"webhook": Idle()})
            one, other = await asyncio.gather(first.claim(15), second.claim(15))
            leased = await db.fetch_val(
                sa.select(sa.func.count())
                .select_from(outbox_delivery)
                .where(outbox_delivery.c.lease_until.is_not(None))
            )
            return [a.delivery_id for a, _ in one], [a.delivery_id for a, _ in other], leased
        finally:
            await db.disconnect()

    one, other, leased = asyncio.run(scenario())
    assert set(one).isdisjoint(other)
    assert len(one) + len(other) == leased == 20


def test_a_worker_claims_only_deliveries_to_its_own_endpoints(receiver: Receiver, settings: Settings) -> None:
    """Another instance's endpoint (or one removed since this one started) is never posted to from here."""
    webhooks = settings.with_overrides(**webhook_settings(receiver))

    async def scenario() -> list[str]:
        db = create_database(webhooks)
        await db.connect()
        try:
            mine = await add_event(db, receiver.url)
            await add_event(db, "http://127.0.0.1:9/another-instance")
            claimed = await Deliveries(db, webhooks, {"webhook": Idle()}).claim(10)
            assert [attempt.event_id for attempt, _ in claimed] == [mine]
            return [attempt.destination for attempt, _ in claimed]
        finally:
            await db.disconnect()

    assert asyncio.run(scenario()) == [receiver.url]


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("172.16.0.1", True),
        ("169.254.169.254", True),  # cloud metadata: link-local
        ("0.0.0.0", True),  # noqa: S104 (an address under test, not one bound)
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is forbidden


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command to make a certificate")
@pytest.mark.parametrize(("certified", "delivered"), [("localhost", True), ("elsewhere.test", False)])
def test_https_goes_to_the_checked_address_and_checks_the_certificate_against_the_name(
    tmp_path: Path, certified: str, delivered: bool
) -> None:
    """The request is sent to the resolved IP; TLS still gets the endpoint's name (SNI) and checks the
    certificate against it, not against the IP."""
    certificate, key = self_signed(tmp_path, certified)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(certificate, key)
    receiver = Receiver(SECRET, tls=server_side)
    try:
        url = f"https://localhost:{receiver.port}/hook"

        async def send_once() -> Outcome:
            channel = WebhookChannel(
                SECRET, timeout=5, allow_private=True, verify=ssl.create_default_context(cafile=certificate)
            )
            try:
                return await channel.send(Attempt(1, "msg_test", '{"type":"t"}', url, 0))
            finally:
                await channel.close()

        outcome = asyncio.run(send_once())
    finally:
        receiver.close()
    assert outcome.delivered is delivered, outcome
    if delivered:
        [got] = receiver.received
        assert got.verified
        assert got.headers["host"] == f"localhost:{receiver.port}"
    else:
        assert "certificate" in (outcome.error or "").lower()


def test_the_documented_receiver_verifies_a_delivery_and_refuses_a_forgery() -> None:
    """docs/webhooks.md's Python block, run as written with the test's secret."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, Any] = {}
    exec(block.replace('"whsec_..."', repr(SECRET)), namespace)  # noqa: S102 (our own documentation)
    channel = WebhookChannel(SECRET, timeout=1, allow_private=False)
    body = '{"type":"webhook.ping","timestamp":"2026-12-07T00:00:00+00:00","data":{}}'
    headers = channel.signed_headers("msg_doc", body, utcnow())
    assert namespace["receive"](body.encode(), headers)["type"] == "webhook.ping"
    with pytest.raises(PermissionError):
        namespace["receive"](body.replace("ping", "pong").encode(), headers)
    asyncio.run(channel.close())


def test_httpcore_still_imports_sniffio_per_call() -> None:
    """requirements.txt installs sniffio only because httpcore imports it inside a function it calls several
    times per request (encode/httpcore#1103): once it no longer does, drop sniffio (ARCHITECTURE.md)."""
    synchronization = importlib.import_module("httpcore._synchronization")
    assert "import sniffio" in inspect.getsource(synchronization.current_async_library)
    assert importlib.util.find_spec("sniffio") is not None
