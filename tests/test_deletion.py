"""Account deletion (SPEC "Account lifecycle"): the password confirms it; codes, tokens and the email go
(from every row and from the outbox); the user row stays as a tombstone; the referral the person came
from keeps its place in the referrer's list and counts with `email: null`, and its mailbox cannot be
referred again; the email may register anew; a racing update_code or login leaves nothing alive."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from referral.db.tables import outbox_delivery, outbox_event, password_reset, referral, referral_code, user
from tests.factories import Factory, User, login, random_email, random_password, register
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.support import TEST_INTEGRATION_KEY

WEBHOOKS = {"webhook_urls": "https://hooks.example/a", "webhook_secret": "whsec_" + "A" * 32}


def delete(api: LiveClient, person: User, password: str | None = None) -> int:
    answer = api.post("/user/delete", json={"password": password or person.password}, headers=person.auth)
    return answer.status_code


def rows(api: LiveClient, query: sa.Select) -> list[dict]:
    return [dict(row._mapping) for row in api.run(api.app.ctx.db.fetch_all(query))]


def everything_stored(api: LiveClient) -> str:
    """Every row of every table the service keeps, as text: to search for an email."""
    tables = (user, referral, referral_code, outbox_event, outbox_delivery, password_reset)
    return json.dumps([rows(api, sa.select(table)) for table in tables], default=str)


def person_referred_with_password(api: LiveClient, make: Factory, code: str) -> User:
    """Someone who registered as a referral with a password, so a user too."""
    email, password = random_email(), random_password()
    make.referral(code, email=email, password=password)
    answer = login(api, email, password)
    return User(answer.json()["user_id"], email, password, answer.json()["token"])


def test_deletion_needs_the_right_password(api, make):
    person = make.user()
    assert_problem(api.post("/user/delete", json={}, headers=person.auth), 422)
    assert_problem(api.post("/user/delete", json={"password": "not-the-password"}, headers=person.auth), 403)
    assert_problem(api.post("/user/delete", json={"password": person.password}), 401)
    assert api.get("/refer/stats", headers=person.auth).status_code == 200


def test_a_deleted_account_is_gone_everywhere_and_its_referral_stays_without_the_email(api, make):
    referrer = make.user()
    referrer_code = make.code(referrer)["code"]
    person = person_referred_with_password(api, make, referrer_code)
    own_code = make.code(person)["code"]
    their_referral = make.referral(own_code)
    stats_before = api.get("/refer/stats", headers=referrer.auth).json()

    assert delete(api, person) == 204

    assert_problem(login(api, person.email, person.password), 401)
    assert_problem(api.get("/refer/stats", headers=person.auth), 401)
    assert_problem(api.get("/refer/getcode", params={"email": person.email}), 404)
    assert_problem(api.post("/referals/register", json={"email": random_email(), "code": own_code}), 410)
    listed = api.get("/referals/list", params={"user_id": referrer.id}, headers=referrer.auth)
    assert listed.headers["x-total-count"] == "1"
    [row] = listed.json()
    assert (row["email"], row["code"]) == (None, referrer_code)
    assert api.get("/refer/stats", headers=referrer.auth).json() == stats_before
    integration = api.get("/integration/referrals", headers={"X-API-Key": TEST_INTEGRATION_KEY}).json()
    assert [(item["id"], item["code"]) for item in integration if item["id"] == their_referral["id"]] == [
        (their_referral["id"], own_code)
    ]
    assert person.email not in everything_stored(api)
    [tombstone] = rows(api, sa.select(user).where(user.c.id == person.id))
    assert (tombstone["email"], tombstone["password_hash"]) == (None, None)
    assert tombstone["deleted_at"] is not None


def test_the_email_may_register_again_but_its_mailbox_is_not_referred_twice(api, make):
    referrer = make.user()
    code = make.code(referrer)["code"]
    person = person_referred_with_password(api, make, code)
    assert delete(api, person) == 204
    again = register(api, person.email, person.password)
    assert again.status_code == 201
    assert again.json()["user_id"] > person.id
    local, _, domain = person.email.partition("@")
    for email in (person.email, f"{local}+again@{domain}"):
        assert_problem(api.post("/referals/register", json={"email": email, "code": code}), 409)


@pytest.fixture
def hooked(serve_app: Callable[..., LiveClient]) -> LiveClient:
    """The app with a webhook endpoint, its delivery loop stopped: what the outbox holds stays there."""
    client = serve_app(**WEBHOOKS)
    deliveries, client.app.ctx.deliveries = client.app.ctx.deliveries, None
    assert deliveries is not None
    client.run(deliveries.stop(grace=0))
    client.app.ctx.db.on_event_recorded = None
    return client


def test_the_email_leaves_the_outbox_and_account_deleted_is_recorded(hooked):
    make = Factory(hooked)
    referrer = make.user()
    person = person_referred_with_password(hooked, make, make.code(referrer)["code"])
    assert hooked.post("/user/password/forgot", json={"email": person.email}).status_code == 202
    assert person.email in everything_stored(hooked)
    assert delete(hooked, person) == 204
    assert person.email not in everything_stored(hooked)
    events = rows(hooked, sa.select(outbox_event).order_by(outbox_event.c.id))
    payloads = {event["type"]: json.loads(event["payload"]) for event in events}
    assert "mail" not in payloads  # the unsent reset message is dropped
    assert payloads["account.deleted"]["data"] == {"user_id": person.id}
    assert payloads["referral.registered"]["data"]["email"] is None
    registered = [json.loads(e["payload"])["data"] for e in events if e["type"] == "user.registered"]
    assert {item["user_id"]: item["email"] for item in registered}[person.id] is None


def live_codes(api: LiveClient, user_id: int) -> list[dict]:
    codes = referral_code.c
    return rows(api, sa.select(referral_code).where(codes.user_id == user_id, codes.retired_at.is_(None)))


def race_deletion(api: LiveClient, person: User) -> list:
    """Deletion, update_code and login of one person, sent at once: the three answers."""
    credentials = {"email": person.email, "password": person.password}
    return api.gather(
        [
            lambda client: client.post("/user/delete", json={"password": person.password}, headers=person.auth),
            lambda client: client.post("/refer/update_code", json={"day": 3}, headers=person.auth),
            lambda client: client.post("/user/auth", json=credentials),
        ]
    )


def test_a_deletion_racing_update_code_and_login_leaves_no_code_or_token_alive(api, make):
    for _ in range(5):
        person = make.user()
        deleted, _, logged_in = race_deletion(api, person)
        assert deleted.status_code == 204
        assert live_codes(api, person.id) == []
        if logged_in.status_code == 200:
            assert_problem(api.get("/refer/stats", headers={"authorization": logged_in.json()["token"]}), 401)
