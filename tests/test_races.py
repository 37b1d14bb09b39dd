"""Concurrent requests: the database's constraints and transactions keep the rules, on both backends."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from referral.db.tables import referral, referral_code, user
from tests.factories import random_email

CONCURRENCY = 20


def count(api, query) -> int:
    return api.run(api.app.ctx.db.fetch_val(query))


def test_concurrent_update_code_leaves_exactly_one_live_code(api, make):
    owner = make.user()
    answers = api.post_all(
        "/refer/update_code", [{"json": {"day": day}, "headers": owner.auth} for day in range(1, CONCURRENCY + 1)]
    )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 1, 200: CONCURRENCY - 1}, statuses
    assert len({answer.json()["code"] for answer in answers}) == 1
    live = sa.select(sa.func.count()).where(referral_code.c.user_id == owner.id, referral_code.c.retired_at.is_(None))
    assert count(api, live) == 1
    assert count(api, sa.select(sa.func.count()).select_from(referral_code)) == 1


def test_concurrent_custom_codes_of_one_user_leave_one_live_code(api, make):
    owner = make.user()
    bodies = [{"day": 5, "code": f"CUSTOM-{number:02d}"} for number in range(CONCURRENCY)]
    answers = api.post_all("/refer/update_code", [{"json": body, "headers": owner.auth} for body in bodies])
    assert all(answer.status_code == 201 for answer in answers), [answer.text for answer in answers]
    live = sa.select(sa.func.count()).where(referral_code.c.user_id == owner.id, referral_code.c.retired_at.is_(None))
    assert count(api, live) == 1
    current = api.get("/refer/getcode", params={"email": owner.email}).json()["code"]
    assert current in {answer.json()["code"] for answer in answers}


def test_concurrent_claims_of_one_custom_code_give_one_owner(api, make):
    users = [make.user() for _ in range(CONCURRENCY)]
    answers = api.post_all(
        "/refer/update_code", [{"json": {"day": 5, "code": "ONLY-ONE"}, "headers": user.auth} for user in users]
    )
    assert Counter(answer.status_code for answer in answers) == {201: 1, 409: CONCURRENCY - 1}
    assert count(api, sa.select(sa.func.count()).where(referral_code.c.code == "ONLY-ONE")) == 1


def test_concurrent_registrations_of_one_email_give_one_user(api):
    email = random_email()
    answers = api.post_all(
        "/user/register",
        [{"json": {"email": email, "password": f"password-{number}"}} for number in range(CONCURRENCY)],
    )
    assert Counter(answer.status_code for answer in answers) == {201: 1, 409: CONCURRENCY - 1}
    assert count(api, sa.select(sa.func.count()).where(user.c.email == email)) == 1


def test_concurrent_referral_registrations_of_one_email_give_one_referral(api, make):
    code = make.code(make.user())
    email = random_email()
    bodies = [{"email": email, "code": code["code"], "password": f"password-{number}"} for number in range(CONCURRENCY)]
    answers = api.post_all("/referals/register", [{"json": body} for body in bodies])
    assert Counter(answer.status_code for answer in answers) == {201: 1, 409: CONCURRENCY - 1}
    assert count(api, sa.select(sa.func.count()).where(referral.c.email == email)) == 1
    assert count(api, sa.select(sa.func.count()).where(user.c.email == email)) == 1


def test_delete_racing_referral_registrations(api, make):
    owner = make.user()
    code = make.code(owner)
    calls = [
        lambda client: client.post("/referals/register", json={"email": random_email(), "code": code["code"]})
        for _ in range(CONCURRENCY)
    ]
    calls.insert(CONCURRENCY // 2, lambda client: client.delete("/refer/delete", headers=owner.auth))
    answers = api.gather(calls)
    assert answers.pop(CONCURRENCY // 2).status_code == 200
    assert {answer.status_code for answer in answers} <= {201, 410}
    created = sum(answer.status_code == 201 for answer in answers)
    assert count(api, sa.select(sa.func.count()).select_from(referral)) == created
    late = api.post("/referals/register", json={"email": random_email(), "code": code["code"]})
    assert late.status_code == 410


def test_concurrent_referrals_keep_the_total_exact(api, make):
    owner = make.user()
    code = make.code(owner)
    answers = api.post_all(
        "/referals/register", [{"json": {"email": random_email(), "code": code["code"]}} for _ in range(CONCURRENCY)]
    )
    assert all(answer.status_code == 201 for answer in answers)
    listed = api.get("/referals/list", params={"user_id": owner.id, "limit": 1}, headers=owner.auth)
    assert listed.headers["x-total-count"] == str(CONCURRENCY)


def test_concurrent_registrations_never_pass_a_codes_max_uses(api, make):
    owner = make.user()
    code = make.code(owner, max_uses=5)["code"]
    answers = api.post_all("/referals/register", [{"json": {"email": random_email(), "code": code}} for _ in range(30)])
    assert Counter(answer.status_code for answer in answers) == {201: 5, 410: 25}
    assert all(answer.json()["type"].endswith("code-exhausted") for answer in answers if answer.status_code == 410)
    assert count(api, sa.select(sa.func.count()).select_from(referral)) == 5
    stats = api.get("/refer/stats", headers=owner.auth).json()
    assert (stats["referrals"], stats["codes"][0]["uses"]) == (5, 5)
