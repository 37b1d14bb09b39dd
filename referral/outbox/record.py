"""Recording an event: the event row and one pending delivery per destination, in the caller's transaction.

The data-layer function of a change calls `record_event` inside the service's transaction, so the event
commits or rolls back with the change it reports. The destinations are the database's
`webhook_endpoints` (set from WEBHOOK_URLS by `create_database`); with none, nothing is written.
`record_mail` writes a message the same way, always: one row for it and one delivery to its recipient.

The nudge: after recording, `record_event` calls `db.on_event_recorded` when it is set (the delivery task
of this worker sets it, to wake up at once instead of at its next poll). It may run before the commit:
that is harmless, since delivery claims only committed rows and polls every second anyway.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from referral.db.database import ReferralDatabase
from referral.db.tables import outbox_delivery, outbox_event
from referral.outbox.mail import MAIL_CHANNEL, Mail

WEBHOOK_CHANNEL = "webhook"
MAIL_EVENT_TYPE = "mail"


def new_event_id() -> str:
    """`msg_` and a random UUID: what receivers drop duplicates by, so never a row id a sweep could reuse."""
    return f"msg_{uuid.uuid4()}"


def iso_date(moment: datetime) -> str:
    """A date as the API writes one (`referral.api.contract.code_json`): to the second, with its UTC offset."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def event_payload(event_type: str, data: dict[str, Any], *, now: datetime) -> str:
    """The body every channel sends: `{"type", "timestamp", "data"}`, the timestamp in UTC with milliseconds."""
    body = {"type": event_type, "timestamp": now.astimezone(UTC).isoformat(timespec="milliseconds"), "data": data}
    return orjson.dumps(body).decode()


async def record_event(db: ReferralDatabase, event_type: str, data: dict[str, Any], *, now: datetime) -> None:
    """Insert the event and its pending deliveries (call inside the transaction of the change it reports)."""
    destinations = db.webhook_endpoints
    if not destinations:
        return
    event_row_id = await db.fetch_val(
        outbox_event.insert()
        .values(
            event_id=new_event_id(), type=event_type, payload=event_payload(event_type, data, now=now), created_at=now
        )
        .returning(outbox_event.c.id)
    )
    await db.execute(
        outbox_delivery.insert().values(
            [
                {
                    "event_id": event_row_id,
                    "channel": WEBHOOK_CHANNEL,
                    "destination": url,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for url in destinations
            ]
        )
    )
    if db.on_event_recorded is not None:
        db.on_event_recorded()


async def record_mail(db: ReferralDatabase, mail: Mail, *, now: datetime) -> None:
    """Insert a message and its one pending delivery to its recipient (call inside the transaction of the
    request that sends it): recorded whatever WEBHOOK_URLS says."""
    event_row_id = await db.fetch_val(
        outbox_event.insert()
        .values(event_id=new_event_id(), type=MAIL_EVENT_TYPE, payload=mail.payload(), created_at=now)
        .returning(outbox_event.c.id)
    )
    await db.execute(
        outbox_delivery.insert().values(
            event_id=event_row_id,
            channel=MAIL_CHANNEL,
            destination=mail.to,
            state="pending",
            attempts=0,
            next_attempt_at=now,
        )
    )
    if db.on_event_recorded is not None:
        db.on_event_recorded()


NO_RECIPIENT = "no account: nothing sent"


async def record_no_mail(db: ReferralDatabase, *, now: datetime) -> None:
    """The same two rows as `record_mail`, for a request that sends nothing (a password reset for an email
    without an account): the request writes alike either way, so its time tells nothing. The delivery is
    finished at once, with no recipient and no body; the retention sweep deletes it."""
    event_row_id = await db.fetch_val(
        outbox_event.insert()
        .values(event_id=new_event_id(), type=MAIL_EVENT_TYPE, payload="", created_at=now)
        .returning(outbox_event.c.id)
    )
    await db.execute(
        outbox_delivery.insert().values(
            event_id=event_row_id,
            channel=MAIL_CHANNEL,
            destination="",
            state="failed",
            attempts=0,
            next_attempt_at=now,
            finished_at=now,
            last_error=NO_RECIPIENT,
        )
    )


EVENTS_WITH_EMAIL = ("user.registered", "referral.registered")


async def erase_email(db: ReferralDatabase, email: str) -> None:
    """Erase a deleted account's email from the outbox (run it in the deletion's transaction): messages to it
    are deleted, sent or not, and events about it keep their place with `"email": null`."""
    d, e = outbox_delivery.c, outbox_event.c
    to_it = sa.select(d.event_id).where(d.channel == MAIL_CHANNEL, d.destination == email)
    await db.execute(outbox_event.delete().where(e.id.in_(to_it)))
    quoted = orjson.dumps(email).decode()  # as the payloads write it
    pattern = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = sa.select(e.id, e.payload).where(e.type.in_(EVENTS_WITH_EMAIL), e.payload.like(pattern, escape="\\"))
    for row in await db.fetch_all(query):
        body = orjson.loads(row.payload)
        if body.get("data", {}).get("email") == email:
            body["data"]["email"] = None
            await db.execute(outbox_event.update().where(e.id == row.id).values(payload=orjson.dumps(body).decode()))
