"""/refer/update_code, /refer/delete and /refer/getcode."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import random_email
from tests.problems import assert_problem
from tests.support import INTEGRATION

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def expires_in_days(exp_date: str, days: int) -> bool:
    moment = datetime.fromisoformat(exp_date)
    expected = datetime.now(UTC) + timedelta(days=days)
    return abs((moment - expected).total_seconds()) < 60


class TestUpdateCode:
    def test_issues_a_code_with_201(self, api, make):
        user = make.user()
        answer = api.post("/refer/update_code", json={"day": 7}, headers=user.auth)
        assert answer.status_code == 201
        body = answer.json()
        assert set(body) == {"user_id", "code", "exp_date", "max_uses"}
        assert body["max_uses"] is None  # issued without a limit
        assert body["user_id"] == user.id
        assert re.fullmatch(r"[23456789A-HJKMNP-Z]{10}", body["code"])
        assert ISO_WITH_OFFSET.match(body["exp_date"])
        assert expires_in_days(body["exp_date"], 7)

    def test_put_and_bearer_header_work_too(self, api, make):
        user = make.user()
        answer = api.put("/refer/update_code", json={"day": 2}, headers=user.bearer)
        assert answer.status_code == 201

    def test_editing_an_active_code_keeps_it_and_moves_expiry(self, api, make):
        user = make.user()
        first = make.code(user, day=30)
        answer = api.post("/refer/update_code", json={"day": 1}, headers=user.auth)
        assert answer.status_code == 200
        assert answer.json()["code"] == first["code"]
        assert expires_in_days(answer.json()["exp_date"], 1)
        assert api.get("/refer/getcode", params={"email": user.email}).json() == answer.json()

    def test_custom_code(self, api, make):
        user = make.user()
        answer = api.post("/refer/update_code", json={"day": 5, "code": "Summer_2026-x"}, headers=user.auth)
        assert answer.status_code == 201
        assert answer.json()["code"] == "Summer_2026-x"

    def test_new_custom_code_replaces_the_active_one(self, api, make):
        user = make.user()
        old = make.code(user)
        referred = make.referral(old["code"])
        answer = api.post("/refer/update_code", json={"day": 5, "code": "BRAND-NEW"}, headers=user.auth)
        assert answer.status_code == 201
        assert answer.json()["code"] == "BRAND-NEW"
        assert api.get("/refer/getcode", params={"email": user.email}).json()["code"] == "BRAND-NEW"
        old_use = api.post("/referals/register", json={"email": random_email(), "code": old["code"]})
        assert_problem(old_use, 410)
        listed = api.get("/referals/list", params={"user_id": user.id}, headers=user.auth).json()
        assert [(item["email"], item["code"]) for item in listed] == [(referred["email"], old["code"])]

    def test_same_custom_code_as_the_active_one_edits_it(self, api, make):
        user = make.user()
        make.code(user, code="MINE-1234")
        answer = api.post("/refer/update_code", json={"day": 9, "code": "MINE-1234"}, headers=user.auth)
        assert answer.status_code == 200
        assert expires_in_days(answer.json()["exp_date"], 9)

    def test_custom_code_of_someone_else_is_409(self, api, make):
        owner, other = make.user(), make.user()
        make.code(owner, code="TAKEN-CODE")
        answer = api.post("/refer/update_code", json={"day": 5, "code": "TAKEN-CODE"}, headers=other.auth)
        assert assert_problem(answer, 409)["type"].endswith("code-taken")
        assert_problem(api.get("/refer/getcode", params={"email": other.email}), 404)

    def test_deleted_codes_never_come_back(self, api, make):
        owner, other = make.user(), make.user()
        make.code(owner, code="ONCE-ONLY")
        assert api.delete("/refer/delete", headers=owner.auth).status_code == 200
        for user in (owner, other):
            answer = api.post("/refer/update_code", json={"day": 5, "code": "ONCE-ONLY"}, headers=user.auth)
            assert_problem(answer, 409)

    def test_after_delete_a_new_code_is_issued(self, api, make):
        user = make.user()
        first = make.code(user)
        api.delete("/refer/delete", headers=user.auth)
        answer = api.post("/refer/update_code", json={"day": 3}, headers=user.auth)
        assert answer.status_code == 201
        assert answer.json()["code"] != first["code"]

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            *(({"day": day}, "day") for day in (0, -1, 366, 7.5, 7.0, "7", True, 10**12, 10**30, None, [7])),
            ({}, "day"),
            *(
                ({"day": 7, "code": code}, "code")
                for code in ("abc", "x" * 33, "has space", "émoji-🙂", "semi;colon", 12345)
            ),
        ],
    )
    def test_bad_day_or_code_is_422_and_changes_nothing(self, api, make, payload, field):
        user = make.user()
        answer = api.post("/refer/update_code", json=payload, headers=user.auth)
        assert field in assert_problem(answer, 422)["errors"]
        assert_problem(api.get("/refer/getcode", params={"email": user.email}), 404)

    @pytest.mark.parametrize("day", [1, 365])
    def test_day_bounds_are_accepted(self, api, make, day):
        user = make.user()
        answer = api.post("/refer/update_code", json={"day": day}, headers=user.auth)
        assert answer.status_code == 201
        assert expires_in_days(answer.json()["exp_date"], day)

    def test_requires_a_token(self, api):
        answer = api.post("/refer/update_code", json={"day": 7})
        assert_problem(answer, 401)
        assert answer.headers["www-authenticate"].startswith("Bearer")


class TestExpiredCodes:
    def test_expired_code_is_not_active_and_a_new_one_replaces_it(self, api, make, expire_codes):
        user = make.user()
        old = make.code(user)
        expire_codes(user.id)
        assert_problem(api.get("/refer/getcode", params={"email": user.email}), 404)
        assert_problem(api.delete("/refer/delete", headers=user.auth), 404)
        used = api.post("/referals/register", json={"email": random_email(), "code": old["code"]})
        assert_problem(used, 410)
        answer = api.post("/refer/update_code", json={"day": 3}, headers=user.auth)
        assert answer.status_code == 201
        assert answer.json()["code"] != old["code"]
        assert api.get("/refer/getcode", params={"email": user.email}).json()["code"] == answer.json()["code"]


class TestDelete:
    @pytest.mark.parametrize("method", ["DELETE", "POST"])
    def test_returns_the_deleted_code(self, api, make, method):
        user = make.user()
        code = make.code(user)
        answer = api.request(method, "/refer/delete", headers=user.auth)
        assert answer.status_code == 200
        assert answer.json() == code
        assert_problem(api.get("/refer/getcode", params={"email": user.email}), 404)
        assert_problem(api.post("/referals/register", json={"email": random_email(), "code": code["code"]}), 410)

    def test_without_an_active_code_is_404(self, api, make):
        user = make.user()
        assert_problem(api.delete("/refer/delete", headers=user.auth), 404)
        make.code(user)
        assert api.delete("/refer/delete", headers=user.auth).status_code == 200
        assert_problem(api.delete("/refer/delete", headers=user.auth), 404)

    def test_requires_a_token(self, api):
        assert_problem(api.delete("/refer/delete"), 401)


class TestGetCode:
    @pytest.mark.parametrize(
        ("method", "form", "written"),
        [("GET", "params", str.upper), ("GET", "json", str), ("POST", "json", lambda email: f"  {email}  ")],
        ids=["by query string", "by GET with json body", "by POST with json body"],
    )
    def test_every_request_form(self, api, make, method, form, written):
        user = make.user()
        code = make.code(user)
        answer = api.request(method, "/refer/getcode", **{form: {"email": written(user.email)}})
        assert answer.status_code == 200
        assert answer.json() == code

    def test_needs_no_token(self, api, make):
        user = make.user()
        make.code(user)
        answer = api.get("/refer/getcode", params={"email": user.email}, headers={"authorization": "junk"})
        assert answer.status_code == 200

    def test_unknown_email_is_404(self, api):
        assert_problem(api.get("/refer/getcode", params={"email": random_email()}), 404)

    def test_user_without_code_is_404(self, api, make):
        user = make.user()
        assert_problem(api.get("/refer/getcode", params={"email": user.email}), 404)

    @pytest.mark.parametrize("params", [{"email": "nope"}, {"email": ""}, {"email": "a@" + "b" * 300 + ".com"}, {}])
    def test_bad_email_is_422(self, api, params):
        assert "email" in assert_problem(api.get("/refer/getcode", params=params), 422)["errors"]

    @pytest.mark.parametrize("body", [{"email": 5}, {"email": None}, {}, ["a@example.com"], "a@example.com"])
    def test_bad_json_email_is_422(self, api, body):
        assert_problem(api.post("/refer/getcode", json=body), 422)

    def test_a_refused_query_is_refused_the_same_way_again(self, api):
        for _ in range(2):
            errors = assert_problem(api.get("/refer/getcode", params={"email": "nope"}), 422)["errors"]
            assert errors["email"].startswith("is not a valid email address")

    def test_update_and_delete_invalidate_the_cached_code(self, api, make):
        user = make.user()
        make.code(user, code="FIRST-CODE")
        assert api.get("/refer/getcode", params={"email": user.email}).json()["code"] == "FIRST-CODE"
        make.code(user, code="SECOND-CODE")
        assert api.get("/refer/getcode", params={"email": user.email}).json()["code"] == "SECOND-CODE"
        edited = make.code(user, day=100)
        assert api.get("/refer/getcode", params={"email": user.email}).json() == edited
        api.delete("/refer/delete", headers=user.auth)
        assert_problem(api.get("/refer/getcode", params={"email": user.email}), 404)


def register(api, code: str):
    return api.post("/referals/register", json={"email": random_email(), "code": code})


class TestMaxUses:
    def test_the_limit_is_in_every_code_object_but_ref_key(self, api, make):
        owner = make.user()
        issued = make.code(owner, max_uses=2)
        assert issued["max_uses"] == 2
        assert api.get("/refer/getcode", params={"email": owner.email}).json()["max_uses"] == 2
        registered = register(api, issued["code"]).json()
        assert set(registered["ref_key"]) == {"user_id", "code", "exp_date"}
        assert api.delete("/refer/delete", headers=owner.auth).json()["max_uses"] == 2

    def test_a_code_used_up_answers_410_code_exhausted(self, api, make):
        code = make.code(make.user(), max_uses=2)["code"]
        assert [register(api, code).status_code for _ in range(2)] == [201, 201]
        body = assert_problem(register(api, code), 410)
        assert body["type"].endswith("code-exhausted")
        assert "used up" in body["title"]

    def test_editing_keeps_replaces_or_clears_the_limit(self, api, make):
        owner = make.user()
        make.code(owner, max_uses=3)
        assert make.code(owner, day=9)["max_uses"] == 3  # absent: kept
        assert make.code(owner, max_uses=7)["max_uses"] == 7  # a number: replaced
        assert make.code(owner, max_uses=None)["max_uses"] is None  # null: cleared
        assert api.get("/refer/getcode", params={"email": owner.email}).json()["max_uses"] is None

    def test_a_limit_below_the_uses_made_leaves_the_code_used_up(self, api, make):
        owner = make.user()
        code = make.code(owner)["code"]
        assert [register(api, code).status_code for _ in range(3)] == [201, 201, 201]
        make.code(owner, max_uses=2)
        assert_problem(register(api, code), 410)
        make.code(owner, max_uses=4)
        assert register(api, code).status_code == 201

    def test_a_new_custom_code_carries_the_limit_and_counts_its_own_uses(self, api, make):
        owner = make.user()
        old = make.code(owner, max_uses=1)["code"]
        assert register(api, old).status_code == 201
        renamed = make.code(owner, code="FRESH-NAME")
        assert renamed["max_uses"] == 1
        assert register(api, "FRESH-NAME").status_code == 201
        assert_problem(register(api, "FRESH-NAME"), 410)
        codes = api.get("/refer/stats", headers=owner.auth).json()["codes"]
        assert [(c["code"], c["uses"], c["max_uses"]) for c in codes] == [("FRESH-NAME", 1, 1), (old, 1, 1)]

    def test_a_new_code_after_expiry_has_no_limit_unless_given(self, api, make, expire_codes):
        owner = make.user()
        make.code(owner, max_uses=1)
        expire_codes(owner.id)
        assert make.code(owner)["max_uses"] is None

    def test_deleted_and_used_up_answers_as_deleted(self, api, make):
        owner = make.user()
        code = make.code(owner, max_uses=1)["code"]
        assert register(api, code).status_code == 201
        api.delete("/refer/delete", headers=owner.auth)
        assert assert_problem(register(api, code), 410)["type"].endswith("code-not-active")

    @pytest.mark.parametrize("max_uses", [0, -1, 1_000_001, "5", 2.5, True, {}], ids=repr)
    def test_a_bad_limit_is_422_and_changes_nothing(self, api, make, max_uses):
        owner = make.user()
        make.code(owner, max_uses=4)
        answer = api.post("/refer/update_code", json={"day": 3, "max_uses": max_uses}, headers=owner.auth)
        assert "max_uses" in assert_problem(answer, 422)["errors"]
        assert api.get("/refer/getcode", params={"email": owner.email}).json()["max_uses"] == 4

    def test_the_limits_bounds_are_accepted(self, api, make):
        owner = make.user()
        assert make.code(owner, max_uses=1)["max_uses"] == 1
        assert make.code(owner, max_uses=1_000_000)["max_uses"] == 1_000_000


class TestStats:
    def test_a_new_user_has_nothing_yet(self, api, make):
        owner = make.user()
        answer = api.get("/refer/stats", headers=owner.auth)
        assert answer.status_code == 200
        assert answer.json() == {"referrals": 0, "qualified": 0, "codes": []}

    def test_counts_and_codes_after_registrations_deletions_expiry_and_qualifications(self, api, make, expire_codes):
        owner = make.user()
        expired = make.code(owner)["code"]
        register(api, expired)
        expire_codes(owner.id)
        replaced = make.code(owner, max_uses=5)["code"]
        first = register(api, replaced).json()
        register(api, replaced)
        deleted = make.code(owner, code="DELETED-ONE")["code"]
        api.delete("/refer/delete", headers=owner.auth)
        active = make.code(owner, max_uses=3)["code"]
        register(api, active)
        api.post(f"/integration/referrals/{first['id']}/qualify", headers=INTEGRATION)
        make.referral(make.code(make.user())["code"])  # someone else's
        stats = api.get("/refer/stats", headers=owner.auth).json()
        assert (stats["referrals"], stats["qualified"]) == (4, 1)
        assert [(c["code"], c["status"], c["uses"], c["max_uses"]) for c in stats["codes"]] == [
            (active, "active", 1, 3),
            (deleted, "deleted", 0, 5),  # a new custom code carried the limit over
            (replaced, "deleted", 2, 5),  # replaced by a new custom code while valid
            (expired, "expired", 1, None),
        ]
        assert all(ISO_WITH_OFFSET.match(c["exp_date"]) for c in stats["codes"])

    def test_needs_a_token(self, api):
        assert_problem(api.get("/refer/stats"), 401)
