"""GET /user/export (SPEC "Account lifecycle"): everything stored about the caller in one JSON attachment,
for an account with codes and referrals; never a password hash or a reset token."""

from __future__ import annotations

from referral.db.tables import password_reset, user
from tests.factories import Factory, User, login, random_email, random_password
from tests.live import LiveClient
from tests.problems import assert_problem


def referred_user(api: LiveClient, make: Factory, code: str) -> User:
    email, password = random_email(), random_password()
    make.referral(code, email=email, password=password)
    answer = login(api, email, password)
    return User(answer.json()["user_id"], email, password, answer.json()["token"])


def test_the_export_holds_the_account_its_codes_its_referrals_and_where_it_came_from(api, make):
    referrer = make.user()
    referrer_code = make.code(referrer)["code"]
    person = referred_user(api, make, referrer_code)
    first = make.code(person, day=5)["code"]
    assert api.post("/refer/delete", headers=person.auth).status_code == 200
    second = make.code(person, day=9, code="PERSON-CODE", max_uses=5)["code"]
    kept = make.referral(second)
    leaver = referred_user(api, make, second)
    assert api.post("/user/delete", json={"password": leaver.password}, headers=leaver.auth).status_code == 204
    assert api.post("/user/password/forgot", json={"email": person.email}).status_code == 202

    answer = api.get("/user/export", headers=person.auth)

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == f'attachment; filename="referral-account-{person.id}.json"'
    assert answer.headers["cache-control"] == "no-store"
    export = answer.json()
    assert set(export) == {"account", "codes", "referrals", "referred_by"}
    assert export["account"]["user_id"] == person.id
    assert export["account"]["email"] == person.email
    assert [(c["code"], c["status"], c["uses"], c["max_uses"]) for c in export["codes"]] == [
        (second, "active", 2, 5),
        (first, "deleted", 0, None),
    ]
    assert all(
        set(code) == {"code", "exp_date", "status", "uses", "max_uses", "created_at"} for code in export["codes"]
    )
    assert [(r["id"], r["email"], r["code"], r["status"]) for r in export["referrals"]] == [
        (kept["id"], kept["email"], second, "registered"),
        (kept["id"] + 1, None, second, "registered"),
    ]
    assert export["referred_by"]["code"] == referrer_code
    assert export["referred_by"]["referrer_id"] == referrer.id
    stored = api.run(api.app.ctx.db.fetch_one(user.select().where(user.c.id == person.id)))
    [reset] = api.run(api.app.ctx.db.fetch_all(password_reset.select()))
    assert stored["password_hash"] not in answer.text
    assert reset["token_hash"] not in answer.text


def test_an_account_that_was_not_referred_has_no_referred_by(api, make):
    person = make.user()
    export = api.get("/user/export", headers=person.bearer).json()
    assert export["codes"] == []
    assert export["referrals"] == []
    assert export["referred_by"] is None


def test_the_export_needs_a_token(api, make):
    assert_problem(api.get("/user/export"), 401)
