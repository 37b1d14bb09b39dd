"""The delivery loop: every worker claims due deliveries, attempts them and records each outcome.

Claiming is a short transaction: the due rows (`pending`, `next_attempt_at` passed, no live lease) are
selected `FOR UPDATE SKIP LOCKED` on PostgreSQL (two workers never take the same row) and leased for
WEBHOOK_TIMEOUT + LEASE_MARGIN; on SQLite the same statements run inside `BEGIN IMMEDIATE` (the
service's write transaction, `referral.db.sqlite`), which serialises claimers. A lease expires, so a
worker killed mid-attempt leaves its rows to another worker, or to the next start.

The loop polls at least every POLL_SECONDS (the guaranteed path: other workers' and instances' events)
and wakes at once on `nudge()` (the worker that recorded an event calls it after the commit). At most
WEBHOOK_CONCURRENCY attempts are in flight: only that many rows are claimed. The loop writes the
outcomes of the attempts that ended since its last pass in one transaction (`record_outcomes`), so
under load a write transaction serves many deliveries. Stopping lets attempts in flight finish within
the graceful-shutdown time, then cancels them: their rows stay pending, leased until the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa

from referral import metrics
from referral.clock import utcnow
from referral.config import Settings
from referral.db.database import ReferralDatabase
from referral.db.tables import outbox_delivery, outbox_event
from referral.errors import DatabaseUnavailable
from referral.outbox.mail import MAIL_CHANNEL, mail_channel
from referral.outbox.record import WEBHOOK_CHANNEL
from referral.outbox.webhooks import Attempt, Outcome, WebhookChannel

log = logging.getLogger("referral.outbox")

POLL_SECONDS = 1.0
LEASE_MARGIN = 10.0  # seconds a lease outlives WEBHOOK_TIMEOUT: recording the outcome takes some time too
JITTER = 0.2  # each retry delay is scaled by a random factor in [1 - JITTER, 1 + JITTER]
GAUGE_SECONDS = 5.0  # how often the outbox gauges are read from the database
ENDPOINT_REMOVED = "endpoint removed"
SWEEP_SECONDS = 3600.0  # the retention sweep runs at start and then at least hourly
SWEEP_BATCH = 500  # events deleted per transaction: a short write, even on SQLite's single writer
SWEEP_BATCHES = 20  # batches per pass; a pass that found more sweeps again at the next poll


class Channel(Protocol):
    """A way to send an event or a message: webhooks, mail. `name` is `outbox_delivery.channel`."""

    name: str

    async def send(self, attempt: Attempt) -> Outcome: ...

    async def close(self) -> None: ...


def next_delay(delays: tuple[float, ...], attempts_made: int) -> float | None:
    """Seconds before the next attempt after `attempts_made` failed ones (jittered), None when none is left."""
    if attempts_made > len(delays):
        return None
    return delays[attempts_made - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (jitter, not a secret)


def due(now: datetime) -> sa.ColumnElement[bool]:
    d = outbox_delivery.c
    return sa.and_(d.state == "pending", d.next_attempt_at <= now, sa.or_(d.lease_until.is_(None), d.lease_until < now))


class Deliveries:
    """One worker's delivery loop over its channels; `nudge()` wakes it when an event was just recorded."""

    def __init__(self, db: ReferralDatabase, settings: Settings, channels: Mapping[str, Channel]) -> None:
        self.db = db
        self.settings = settings
        self.channels = dict(channels)
        self.concurrency = settings.webhook_concurrency
        self.lease = timedelta(seconds=settings.webhook_timeout + LEASE_MARGIN)
        self._wake = asyncio.Event()
        self._nudged = True  # claim at the first pass, as after a nudge or a poll
        self._more_due = False  # the last claim was full: skip the check for due rows next time
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._gauges_read = 0.0
        self._sweep_at = 0.0  # monotonic time of the next retention sweep
        self._outcomes: list[tuple[Attempt, Outcome, datetime]] = []  # attempts ended, not yet recorded
        self._recording = asyncio.Lock()
        self._database_down = False

    @classmethod
    def for_settings(cls, db: ReferralDatabase, settings: Settings) -> Deliveries:
        """The loop for the channels `settings` configure: mail always (MAIL_URL), webhooks with WEBHOOK_URLS."""
        channels: dict[str, Channel] = {MAIL_CHANNEL: mail_channel(settings)}
        if settings.webhook_endpoints and settings.webhook_secret:
            channels[WEBHOOK_CHANNEL] = WebhookChannel.for_settings(settings)
        return cls(db, settings, channels)

    def nudge(self) -> None:
        """Wake the loop now: a delivery was just committed (safe to call from any code on the loop)."""
        self._nudged = True
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self.run(), name="outbox-delivery")

    async def stop(self, grace: float) -> None:
        """Stop claiming; let attempts in flight finish within `grace` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.record_outcomes()  # of the attempts that finished in time
        for channel in self.channels.values():
            await channel.close()

    async def run(self) -> None:
        """Retire deliveries to removed endpoints, then claim and attempt until stopped."""
        while not self._stopping:
            try:
                await self.retire_removed_endpoints()
                break
            except DatabaseUnavailable:
                await asyncio.sleep(POLL_SECONDS)
            except Exception:  # a database not yet migrated, a bug: delivery must not end for good
                log.exception("outbox: could not retire removed endpoints; trying again")
                await asyncio.sleep(POLL_SECONDS)
        while not self._stopping:
            self._wake.clear()
            try:
                if time.monotonic() - self._gauges_read >= GAUGE_SECONDS:
                    await self.read_gauges()
                if time.monotonic() >= self._sweep_at:
                    await self.sweep()
                await self.record_outcomes()
                # An attempt's end frees one slot; claiming a row at a time would cost a write transaction
                # per delivery, so such a wake claims once half the slots are free. A nudge or a poll claims
                # whatever is free (one slow endpoint holding most slots still leaves the rest in use).
                free = self.concurrency - len(self._in_flight)
                if free >= (self.concurrency + 1) // 2 or (free and self._nudged):
                    self._nudged = False
                    for attempt, channel in await self.claim(free):
                        task = asyncio.create_task(self._attempt(channel, attempt), name="outbox-attempt")
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                self._database_down = False
            except DatabaseUnavailable:
                if not self._database_down:  # once per outage, not once per poll
                    log.warning("outbox: the database does not answer; delivery waits")
                self._database_down = True
            except Exception:  # a bug must not end delivery for the worker's lifetime: logged, tried again
                log.exception("outbox: the delivery loop failed; it goes on at the next poll")
            try:
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                self._nudged = True

    async def retire_removed_endpoints(self) -> None:
        """Mark failed the pending webhook deliveries whose endpoint is no longer in WEBHOOK_URLS."""
        d = outbox_delivery.c
        now = utcnow()
        query = (
            outbox_delivery.update()
            .where(
                d.channel == WEBHOOK_CHANNEL,
                d.state == "pending",
                d.destination.not_in(self.settings.webhook_endpoints),
            )
            .values(state="failed", finished_at=now, last_error=ENDPOINT_REMOVED, lease_until=None)
        )
        async with self.db.transaction():
            await self.db.execute(query)

    def channels_here(self) -> sa.ColumnElement[bool]:
        """The deliveries this worker may attempt: of its channels, and webhooks only to its own WEBHOOK_URLS
        (an instance configured with other endpoints never posts to this one's)."""
        d = outbox_delivery.c
        return sa.or_(
            *(
                sa.and_(d.channel == name, d.destination.in_(self.settings.webhook_endpoints))
                if name == WEBHOOK_CHANNEL
                else d.channel == name
                for name in self.channels
            )
        )

    async def claim(self, limit: int) -> list[tuple[Attempt, Channel]]:
        """Lease up to `limit` due deliveries of this worker's channels, in one short write transaction."""
        now = utcnow()
        d = outbox_delivery.c
        due_here = sa.and_(due(now), self.channels_here())
        # A plain read first: most polls find nothing due, and then take no write lock (SQLite's is the API's too).
        if not self._more_due and not await self.db.fetch_val(sa.select(sa.exists().where(due_here))):
            return []
        select = (
            sa.select(d.id, d.destination, d.channel, d.attempts, outbox_event.c.event_id, outbox_event.c.payload)
            .join(outbox_event, outbox_event.c.id == d.event_id)
            .where(due_here)
            .order_by(d.next_attempt_at)
            .limit(limit)
            .with_for_update(of=outbox_delivery, skip_locked=True)  # SQLite renders none: BEGIN IMMEDIATE
        )
        async with self.db.transaction():
            rows = await self.db.fetch_all(select)
            self._more_due = len(rows) == limit
            if not rows:
                return []
            ids = [row.id for row in rows]
            await self.db.execute(outbox_delivery.update().where(d.id.in_(ids)).values(lease_until=now + self.lease))
        return [
            (
                Attempt(row.id, row.event_id, row.payload, row.destination, row.attempts, row.channel),
                self.channels[row.channel],
            )
            for row in rows
        ]

    async def _attempt(self, channel: Channel, attempt: Attempt) -> None:
        outcome = await channel.send(attempt)
        self._outcomes.append((attempt, outcome, utcnow()))
        self._wake.set()  # a slot is free, and an outcome waits for the loop to record it

    async def record_outcomes(self) -> None:
        """Write the outcomes waiting, all in one transaction (a write transaction per batch, not per
        attempt: SQLite has one writer), one UPDATE for the rows that end alike (a batch of deliveries
        answered 204 is one statement). The loop calls it on every pass, so under load the batches grow by
        themselves; an attempt ending alone wakes the loop, and is written at once."""
        async with self._recording:
            batch, self._outcomes = self._outcomes, []
            if not batch:
                return
            written = utcnow()
            alike: dict[tuple[tuple[str, object], ...], list[int]] = {}
            results = []
            mail_done = []  # messages sent or failed: their bodies (reset tokens) are erased
            for attempt, outcome, ended in batch:
                values, result = self._outcome_values(attempt, outcome, ended, written)
                alike.setdefault(tuple(values.items()), []).append(attempt.delivery_id)
                results.append((attempt.channel, result))
                if attempt.channel == MAIL_CHANNEL and result != "retried":
                    mail_done.append(attempt.event_id)
            d = outbox_delivery.c
            try:
                async with self.db.transaction():
                    for values, ids in alike.items():
                        await self.db.execute(outbox_delivery.update().where(d.id.in_(ids)).values(dict(values)))
                    if mail_done:
                        erase = outbox_event.update().where(outbox_event.c.event_id.in_(mail_done)).values(payload="")
                        await self.db.execute(erase)
            except DatabaseUnavailable:
                log.warning("outbox: could not record %d outcomes; their leases will expire", len(batch))
                return
        for channel, result in results:
            metrics.outbox_delivery(channel, result)

    def _outcome_values(
        self, attempt: Attempt, outcome: Outcome, ended: datetime, written: datetime
    ) -> tuple[dict[str, object], str]:
        """The row's new values for an outcome (delivered, a retry counted from the attempt's end, or failed
        after the last delay) and its metric's result; logs a failed attempt."""
        made = attempt.attempts + 1
        values: dict[str, object] = {"attempts": made, "lease_until": None, "last_status": outcome.status}
        if outcome.delivered:
            values |= {"state": "delivered", "finished_at": written, "last_error": None}
            return values, "delivered"
        values["last_error"] = outcome.error
        delay = None if outcome.final else next_delay(self.settings.retry_delays, made)
        if delay is None:
            values |= {"state": "failed", "finished_at": written}
            result = "failed"
        else:
            values["next_attempt_at"] = ended + timedelta(seconds=delay)
            result = "retried"
        if attempt.channel == MAIL_CHANNEL:  # never the recipient: log lines carry no email address
            log.warning(
                "mail attempt failed: message %s, %s, attempt %d, %s",
                attempt.event_id,
                outcome.describe(),
                made,
                "giving up" if result == "failed" else "will retry",
            )
        else:
            log.warning(
                "webhook attempt failed: event %s, endpoint %s, %s, attempt %d, %s",
                attempt.event_id,
                urlsplit(attempt.destination).hostname,
                outcome.describe(),
                made,
                "giving up" if result == "failed" else "will retry",
            )
        return values, result

    async def sweep(self) -> int:
        """Delete the events older than EVENT_RETENTION_DAYS whose deliveries all finished that long ago,
        a bounded batch per transaction: how many were deleted. Sweeps again soon when more are left."""
        cutoff = utcnow() - timedelta(days=self.settings.event_retention_days)
        d, e = outbox_delivery.c, outbox_event.c
        unfinished = sa.exists().where(
            d.event_id == e.id, sa.or_(d.state == "pending", d.finished_at.is_(None), d.finished_at >= cutoff)
        )
        expired = sa.select(e.id).where(e.created_at < cutoff, ~unfinished).order_by(e.id).limit(SWEEP_BATCH)
        deleted = 0
        for _ in range(SWEEP_BATCHES):
            async with self.db.transaction():
                ids = [row.id for row in await self.db.fetch_all(expired)]
                if ids:  # their deliveries go with them (ON DELETE CASCADE; SQLite's connections enforce it)
                    await self.db.execute(outbox_event.delete().where(e.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < SWEEP_BATCH:
                self._sweep_at = time.monotonic() + SWEEP_SECONDS
                break
            await asyncio.sleep(0)  # let the attempts' results in between batches
        else:
            self._sweep_at = time.monotonic() + POLL_SECONDS
        if deleted:
            log.info("outbox: %d events older than %d days deleted", deleted, self.settings.event_retention_days)
        return deleted

    async def read_gauges(self) -> None:
        """referral_outbox_pending and referral_outbox_oldest_pending_seconds from the database (the loop
        calls it every GAUGE_SECONDS: one aggregate query, not one per scrape)."""
        self._gauges_read = time.monotonic()
        d = outbox_delivery.c
        query = (
            sa.select(sa.func.count(), sa.func.min(outbox_event.c.created_at))
            .select_from(outbox_delivery.join(outbox_event, outbox_event.c.id == d.event_id))
            .where(d.state == "pending")
        )
        row = await self.db.fetch_one(query)
        count, oldest = (row[0], row[1]) if row is not None else (0, None)
        metrics.outbox_backlog(count, oldest)
