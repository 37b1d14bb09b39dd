"""`python -m referral webhooks status | retry | ping`: the operator's view of the outbox and its levers.

`status` prints pending, delivered and failed counts per endpoint (and for mail) and the age of the oldest pending
event; `retry` puts the failed deliveries to configured endpoints back in the queue (due now, attempts
from zero: a running service picks them up within a second); `ping` sends a `webhook.ping` event to
every endpoint, directly rather than through the outbox, and reports each answer (exit status 1 when one
does not take it). Settings come from the environment and .env, as for serving.
"""

from __future__ import annotations

import sys
from typing import TextIO

import sqlalchemy as sa

from referral.clock import utcnow
from referral.config import Settings
from referral.db.database import ReferralDatabase, create_database
from referral.db.tables import outbox_delivery, outbox_event
from referral.outbox.mail import MAIL_CHANNEL
from referral.outbox.record import event_payload, new_event_id
from referral.outbox.webhooks import Attempt, WebhookChannel

COMMANDS = ("status", "retry", "ping")
USAGE = "usage: python -m referral webhooks status | retry | ping"


async def run(command: str, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run one command: its exit status."""
    if command == "ping":
        return await ping(settings, out)
    db = create_database(settings)
    await db.connect()
    try:
        if command == "status":
            await status(db, out)
        else:
            await retry(db, settings, out)
        return 0
    finally:
        await db.disconnect()


async def status(db: ReferralDatabase, out: TextIO) -> None:
    d = outbox_delivery.c
    # Mail counts as one line, `mail`: its destinations are people's addresses, not endpoints.
    target = sa.case((d.channel == MAIL_CHANNEL, sa.literal(MAIL_CHANNEL)), else_=d.destination)
    counts = sa.select(target, d.state, sa.func.count()).group_by(target, d.state)
    oldest = (
        sa.select(target, sa.func.min(outbox_event.c.created_at))
        .join(outbox_event, outbox_event.c.id == d.event_id)
        .where(d.state == "pending")
        .group_by(target)
    )
    table: dict[str, dict[str, int]] = {}
    for row in await db.fetch_all(counts):  # indexed, not unpacked: databases converts types on indexing only
        table.setdefault(row[0], {})[row[1]] = row[2]
    ages = {row[0]: (utcnow() - row[1]).total_seconds() for row in await db.fetch_all(oldest)}
    if not table:
        print("no deliveries in the outbox", file=out)
    for destination, states in sorted(table.items()):
        age = f"{ages[destination]:.0f} s" if destination in ages else "-"
        print(
            f"{destination}  pending {states.get('pending', 0)}  delivered {states.get('delivered', 0)}"
            f"  failed {states.get('failed', 0)}  oldest pending {age}",
            file=out,
        )


async def retry(db: ReferralDatabase, settings: Settings, out: TextIO) -> None:
    d = outbox_delivery.c
    query = (
        outbox_delivery.update()
        .where(d.state == "failed", d.channel == "webhook", d.destination.in_(settings.webhook_endpoints))
        .values(
            state="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None, finished_at=None, last_error=None
        )
        .returning(d.id)
    )
    async with db.transaction():
        count = len(await db.fetch_all(query))
    print(f"{count} failed deliveries queued again", file=out)


async def ping(settings: Settings, out: TextIO) -> int:
    if not settings.webhook_endpoints or not settings.webhook_secret:
        print("no endpoints: WEBHOOK_URLS is unset", file=out)
        return 1
    channel = WebhookChannel.for_settings(settings)
    event_id, payload = new_event_id(), event_payload("webhook.ping", {}, now=utcnow())
    failures = 0
    try:
        for endpoint in settings.webhook_endpoints:
            outcome = await channel.send(Attempt(0, event_id, payload, endpoint, 0))
            failures += not outcome.delivered
            print(f"{endpoint}  {'ok' if outcome.delivered else 'FAILED'}  {outcome.describe()}", file=out)
    finally:
        await channel.close()
    return 1 if failures else 0
