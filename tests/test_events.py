"""Recording events in the outbox: each in the transaction of its change, one pending delivery per endpoint.

Read back from the tables (delivery is `referral.outbox.delivery`'s, tested with it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa

from referral.db import referrals
from referral.db.tables import outbox_delivery, outbox_event, referral, user
from tests.factories import Factory, User, random_email, random_password
from tests.live import LiveClient

ENDPOINTS = ("https://hooks.example/a", "https://hooks.example/b")
WEBHOOKS = {"webhook_urls": ",".join(ENDPOINTS), "webhook_secret": "whsec_" + "A" * 32}
EVENT_ID = re.compile(r"^msg_[0-9a-f-]{36}$")


@pytest.fixture
def hooked(serve_app: Callable[..., LiveClient]) -> LiveClient:
    """The app with two webhook endpoints, its delivery loop stopped: these tests read what was recorded
    (tests/test_webhooks.py delivers it)."""
    client = serve_app(**WEBHOOKS)
    deliveries, client.app.ctx.deliveries = client.app.ctx.deliveries, None
    assert deliveries is not None
    client.run(deliveries.stop(grace=0))
    client.app.ctx.db.on_event_recorded = None
    return client


def recorded(client: LiveClient) -> list[dict[str, Any]]:
    """Every event, oldest first: its row, the parsed payload and its deliveries."""
    db = client.app.ctx.db
    events = client.run(db.fetch_all(sa.select(outbox_event).order_by(outbox_event.c.id)))
    deliveries = client.run(db.fetch_all(sa.select(outbox_delivery).order_by(outbox_delivery.c.id)))
    return [
        {
            "row": event,
            "body": json.loads(event["payload"]),
            "deliveries": [delivery for delivery in deliveries if delivery["event_id"] == event["id"]],
        }
        for event in events
    ]


def count(client: LiveClient, table: sa.Table) -> int:
    return client.run(client.app.ctx.db.fetch_val(sa.select(sa.func.count()).select_from(table)))


def test_every_event_type_is_recorded_with_its_payload_and_a_delivery_per_endpoint(hooked: LiveClient) -> None:
    make = Factory(hooked)
    started = datetime.now(UTC) - timedelta(seconds=1)
    owner = make.user()
    issued = make.code(owner, day=3, max_uses=3)
    updated = make.code(owner, day=9)
    plain = make.referral(issued["code"])
    member_email, member_password = random_email(), random_password()
    member = make.referral(issued["code"], email=member_email, password=member_password)
    member_id = hooked.run(hooked.app.ctx.db.fetch_val(sa.select(user.c.id).where(user.c.email == member_email)))
    replaced = make.code(owner, day=5, code="OWN-CODE")
    deleted = hooked.delete("/refer/delete", headers=owner.auth).json()

    events = recorded(hooked)
    referral_data = {"referrer_id": owner.id, "code": issued["code"]}
    assert [(event["row"]["type"], event["body"]["data"]) for event in events] == [
        ("user.registered", {"user_id": owner.id, "email": owner.email, "referrer_id": None}),
        ("code.issued", issued),
        ("code.updated", updated),
        (
            "referral.registered",
            {"referral_id": plain["id"], "email": plain["email"], "user_id": None, **referral_data},
        ),
        ("user.registered", {"user_id": member_id, "email": member_email, "referrer_id": owner.id}),
        (
            "referral.registered",
            {"referral_id": member["id"], "email": member_email, "user_id": member_id, **referral_data},
        ),
        ("code.issued", replaced),
        ("code.deleted", {name: deleted[name] for name in ("user_id", "code", "exp_date")}),
    ]
    assert issued["max_uses"] == updated["max_uses"] == 3  # what the code objects say, the events say
    assert updated["code"] == issued["code"]
    assert deleted["code"] == "OWN-CODE"
    for event in events:
        body, row = event["body"], event["row"]
        assert set(body) == {"type", "timestamp", "data"}
        assert body["type"] == row["type"]
        moment = datetime.fromisoformat(body["timestamp"])
        assert moment.utcoffset() == timedelta(0)
        assert started <= moment <= datetime.now(UTC)
        assert EVENT_ID.match(row["event_id"])
        assert [(d["channel"], d["destination"], d["state"], d["attempts"]) for d in event["deliveries"]] == [
            ("webhook", url, "pending", 0) for url in ENDPOINTS
        ]
        assert all(d["next_attempt_at"] == row["created_at"] for d in event["deliveries"])
    assert len({event["row"]["event_id"] for event in events}) == len(events)


@dataclass
class Scene:
    """Who a refused request involves: `owner` and `other` have an active code each, `newcomer` deleted theirs."""

    owner: User
    other: User
    newcomer: User
    code: str  # the owner's
    deleted_code: str  # the newcomer's


class Refusal(NamedTuple):
    path: str
    body: Callable[[Scene], dict[str, Any]]
    status: int
    asker: str | None = None  # the Scene's user who sends it, with their token
    method: str = "POST"


def referral_of(email: str, code: str, password: str | None = None) -> dict[str, Any]:
    return {"email": email, "code": code} | ({"password": password} if password else {})


REFUSALS = {
    "email taken": Refusal("/user/register", lambda s: {"email": s.owner.email, "password": random_password()}, 409),
    "referral's email already a user": Refusal(
        "/referals/register", lambda s: referral_of(s.other.email, s.code, random_password()), 409
    ),
    "malformed code": Refusal("/referals/register", lambda s: referral_of(random_email(), "x!"), 422),
    "unknown code": Refusal("/referals/register", lambda s: referral_of(random_email(), "NOSUCHCODE"), 404),
    "deleted code": Refusal("/referals/register", lambda s: referral_of(random_email(), s.deleted_code), 410),
    "self-referral": Refusal(
        "/referals/register", lambda s: referral_of(s.owner.email.replace("@", "+me@"), s.code), 422
    ),
    "custom code taken (after retiring the asker's)": Refusal(
        "/refer/update_code", lambda s: {"day": 3, "code": s.code}, 409, asker="other"
    ),
    "delete without an active code": Refusal("/refer/delete", lambda s: {}, 404, asker="newcomer", method="DELETE"),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_request_records_nothing(hooked: LiveClient, refusal: Refusal) -> None:
    make = Factory(hooked)
    owner, other, newcomer = make.user(), make.user(), make.user()
    make.code(other)
    deleted_code = make.code(newcomer)["code"]
    assert hooked.delete("/refer/delete", headers=newcomer.auth).status_code == 200
    scene = Scene(owner, other, newcomer, make.code(owner)["code"], deleted_code)
    before = count(hooked, outbox_event), count(hooked, outbox_delivery)
    headers = getattr(scene, refusal.asker).auth if refusal.asker else None
    answer = hooked.request(refusal.method, refusal.path, json=refusal.body(scene) or None, headers=headers)
    assert answer.status_code == refusal.status, answer.text
    assert (count(hooked, outbox_event), count(hooked, outbox_delivery)) == before


def test_a_transaction_failing_after_recording_leaves_no_event(
    hooked: LiveClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = Factory(hooked)
    code = make.code(make.user())["code"]
    before = count(hooked, outbox_event), count(hooked, outbox_delivery), count(hooked, user)

    async def fails(*_: Any, **__: Any) -> None:
        raise RuntimeError("a statement after the events failed")

    monkeypatch.setattr(referrals, "count_one_more", fails)  # runs after user.registered and referral.registered
    answer = hooked.post(
        "/referals/register", json={"email": random_email(), "code": code, "password": random_password()}
    )
    assert answer.status_code == 500
    assert (count(hooked, outbox_event), count(hooked, outbox_delivery), count(hooked, user)) == before
    assert count(hooked, referral) == 0


def test_no_event_is_recorded_without_webhook_urls(api: LiveClient, make: Factory) -> None:
    owner = make.user()
    code = make.code(owner)["code"]
    make.code(owner)
    make.referral(code)
    make.referral(code, password=random_password())
    assert api.delete("/refer/delete", headers=owner.auth).status_code == 200
    assert (count(api, outbox_event), count(api, outbox_delivery)) == (0, 0)


def test_recording_nudges_the_delivery_hook(hooked: LiveClient) -> None:
    nudges: list[None] = []
    hooked.app.ctx.db.on_event_recorded = lambda: nudges.append(None)
    Factory(hooked).user()
    assert len(nudges) == 1
