"""/referals/register and /referals/list."""

from __future__ import annotations

import pytest

from referral.clock import utcnow
from referral.db.tables import referral_code
from tests.factories import random_email
from tests.problems import assert_problem

FRIEND = {"email": "friend@example.com", "code": "GOOD-CODE"}  # a well-formed referral, for the bad-input table


def register_referral(api, **body):
    return api.post("/referals/register", json=body)


class TestRegister:
    def test_answer_shape(self, api, make):
        owner = make.user()
        code = make.code(owner, day=10)
        answer = register_referral(api, email="Friend@Example.com", code=code["code"])
        assert answer.status_code == 201
        assert answer.json() == {
            "id": 1,
            "email": "friend@example.com",
            "exp_date": code["exp_date"],
            "ref_key": {"user_id": owner.id, "code": code["code"], "exp_date": code["exp_date"]},
        }

    def test_with_password_the_referral_becomes_a_user(self, api, make):
        owner = make.user()
        code = make.code(owner)
        email = random_email()
        assert register_referral(api, email=email, code=code["code"], password="referral-pass").status_code == 201
        login = api.post("/user/auth", json={"email": email, "password": "referral-pass"})
        assert login.status_code == 200
        own = api.post("/refer/update_code", json={"day": 3}, headers={"authorization": login.json()["token"]})
        assert own.status_code == 201
        assert own.json()["user_id"] == login.json()["user_id"]

    def test_without_password_no_user_is_created(self, api, make):
        code = make.code(make.user())
        email = random_email()
        register_referral(api, email=email, code=code["code"])
        assert_problem(api.post("/user/auth", json={"email": email, "password": "anything-at-all"}), 401)
        assert api.post("/user/register", json={"email": email, "password": "a-fine-passphrase"}).status_code == 201

    def test_email_already_a_referral_is_409(self, api, make):
        code = make.code(make.user())
        other_code = make.code(make.user())
        email = random_email()
        register_referral(api, email=email, code=code["code"])
        for used in (code, other_code):
            answer = register_referral(api, email=email.upper(), code=used["code"])
            assert assert_problem(answer, 409)["type"].endswith("already-referred")

    def test_with_password_an_existing_user_is_409_and_nothing_is_recorded(self, api, make):
        owner, existing = make.user(), make.user()
        code = make.code(owner)
        answer = register_referral(api, email=existing.email, code=code["code"], password="another-fine-passphrase")
        assert assert_problem(answer, 409)["type"].endswith("email-taken")
        listed = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth)
        assert listed.json() == []

    def test_existing_user_may_be_recorded_as_a_referral_without_password(self, api, make):
        owner, existing = make.user(), make.user()
        code = make.code(owner)
        assert register_referral(api, email=existing.email, code=code["code"]).status_code == 201

    def test_self_referral_is_422(self, api, make):
        owner = make.user()
        code = make.code(owner)
        for email in (owner.email, owner.email.upper()):
            answer = register_referral(api, email=email, code=code["code"])
            assert assert_problem(answer, 422)["type"].endswith("self-referral")

    def test_unknown_code_is_404(self, api):
        assert assert_problem(register_referral(api, email=random_email(), code="NO-SUCH-CODE"), 404)

    def test_deleted_code_is_410(self, api, make):
        owner = make.user()
        code = make.code(owner)
        api.delete("/refer/delete", headers=owner.auth)
        assert_problem(register_referral(api, email=random_email(), code=code["code"]), 410)

    def test_expired_code_is_410(self, api, make, expire_codes):
        owner = make.user()
        code = make.code(owner)
        expire_codes(owner.id)
        assert_problem(register_referral(api, email=random_email(), code=code["code"]), 410)

    def test_checks_the_database_not_the_cache(self, api, make):
        owner = make.user()
        code = make.code(owner)
        assert api.get("/refer/getcode", params={"email": owner.email}).status_code == 200  # now cached
        retire = referral_code.update().where(referral_code.c.user_id == owner.id).values(retired_at=utcnow())
        api.run(api.app.ctx.db.execute(retire))  # behind the cache's back
        assert api.get("/refer/getcode", params={"email": owner.email}).status_code == 200  # still cached
        assert_problem(register_referral(api, email=random_email(), code=code["code"]), 410)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            *(({**FRIEND, "code": code}, "code") for code in ("abc", "bad code!", "x" * 33, 1234)),
            ({"email": "friend@example.com"}, "code"),
            ({**FRIEND, "email": "not an email"}, "email"),
            ({"code": "GOOD-CODE"}, "email"),
            *(({**FRIEND, "password": password}, "password") for password in ("short", "p" * 257, 123456789)),
        ],
    )
    def test_malformed_input_is_422(self, api, body, field):
        assert field in assert_problem(register_referral(api, **body), 422)["errors"]


class TestList:
    def test_lists_own_referrals_oldest_first(self, api, make):
        owner = make.user()
        first_code = make.code(owner, code="FIRST-CODE")
        first = make.referral(first_code["code"])
        second_code = make.code(owner, code="SECOND-CODE")
        second = make.referral(second_code["code"], password="second-fine-passphrase")
        make.referral(make.code(make.user())["code"])  # someone else's
        answer = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth)
        assert answer.status_code == 200
        assert answer.headers["x-total-count"] == "2"
        unqualified = {"status": "registered", "qualified_at": None}
        assert answer.json() == [
            {
                "id": first["id"],
                "email": first["email"],
                "code": "FIRST-CODE",
                "ref_key": first["ref_key"],
                **unqualified,
            },
            {
                "id": second["id"],
                "email": second["email"],
                "code": "SECOND-CODE",
                "ref_key": second["ref_key"],
                **unqualified,
            },
        ]

    def test_referrals_keep_their_code_after_it_is_deleted(self, api, make):
        owner = make.user()
        code = make.code(owner)
        referred = make.referral(code["code"])
        api.delete("/refer/delete", headers=owner.auth)
        listed = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth).json()
        ref_key = {name: code[name] for name in ("user_id", "code", "exp_date")}  # ref_key keeps its three fields
        assert listed == [
            {
                "id": referred["id"],
                "email": referred["email"],
                "code": code["code"],
                "ref_key": ref_key,
                "status": "registered",
                "qualified_at": None,
            }
        ]

    @pytest.mark.parametrize("form", ["query", "get-body", "post-body"])
    def test_every_request_form(self, api, make, form):
        owner = make.user()
        make.referral(make.code(owner)["code"])
        if form == "query":
            answer = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth)
        elif form == "get-body":
            answer = api.request("GET", "/referals/list", json={"user_id": owner.id}, headers=owner.bearer)
        else:
            answer = api.post("/referals/list", json={"user_id": owner.id}, headers=owner.auth)
        assert answer.status_code == 200
        assert len(answer.json()) == 1

    def test_empty_list(self, api, make):
        owner = make.user()
        answer = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth)
        assert answer.json() == []
        assert answer.headers["x-total-count"] == "0"

    def test_pagination(self, api, make):
        owner = make.user()
        code = make.code(owner)
        emails = [make.referral(code["code"])["email"] for _ in range(5)]
        page = api.get("/referals/list", params={"user_id": owner.id, "limit": 2, "offset": 1}, headers=owner.auth)
        assert [item["email"] for item in page.json()] == emails[1:3]
        assert page.headers["x-total-count"] == "5"
        tail = api.post("/referals/list", json={"user_id": owner.id, "limit": 10, "offset": 4}, headers=owner.auth)
        assert [item["email"] for item in tail.json()] == emails[4:]
        assert tail.headers["x-total-count"] == "5"
        beyond = api.get("/referals/list", params={"user_id": owner.id, "offset": 5}, headers=owner.auth)
        assert beyond.json() == []
        assert beyond.headers["x-total-count"] == "5"  # the total without a row to carry it

    def test_someone_elses_list_is_403(self, api, make):
        owner, other = make.user(), make.user()
        make.referral(make.code(owner)["code"])
        assert_problem(api.get("/referals/list", params={"user_id": owner.id}, headers=other.auth), 403)
        assert_problem(api.get("/referals/list", params={"user_id": 999_999}, headers=other.auth), 403)

    def test_requires_a_token(self, api, make):
        owner = make.user()
        assert_problem(api.get("/referals/list", params={"user_id": owner.id}), 401)

    @pytest.mark.parametrize(
        "params",
        [
            {},
            *({"user_id": user_id} for user_id in ("", "abc", "1.5", "0", "-1", "9" * 40)),
            *(
                {"user_id": "1", **page}
                for page in ({"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"offset": "-1"})
            ),
        ],
    )
    def test_missing_or_bad_query_is_422(self, api, make, params):
        owner = make.user()
        assert_problem(api.get("/referals/list", params=params, headers=owner.auth), 422)

    @pytest.mark.parametrize(
        "body", [{}, {"user_id": "1"}, {"user_id": 1.0}, {"user_id": True}, {"user_id": None}, [1], {"user_id": 10**40}]
    )
    def test_missing_or_bad_body_is_422(self, api, make, body):
        owner = make.user()
        assert_problem(api.post("/referals/list", json=body, headers=owner.auth), 422)
