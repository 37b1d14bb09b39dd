"""/integration: the integrator's backend qualifies referrals and syncs them with an X-API-Key."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import pytest
import sqlalchemy as sa

from referral.db.tables import outbox_event
from tests.factories import Factory, User
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.support import INTEGRATION, TEST_INTEGRATION_KEY

CONCURRENCY = 20
WEBHOOKS = {"webhook_urls": "https://hooks.example/a", "webhook_secret": "whsec_" + "A" * 32}
FIELDS = {"id", "email", "code", "referrer_id", "status", "qualified_at", "reference"}


def qualify(api: LiveClient, referral_id: int, body: object = None, **kwargs: object):
    options = {"json": body} if body is not None else {}
    return api.post(f"/integration/referrals/{referral_id}/qualify", headers=INTEGRATION, **options, **kwargs)


def referrals_of(make: Factory, count: int) -> tuple[User, str, list[dict]]:
    owner = make.user()
    code = make.code(owner)["code"]
    return owner, code, [make.referral(code) for _ in range(count)]


class TestQualify:
    def test_qualifies_a_referral_with_its_reference(self, api, make):
        owner, code, [referred] = referrals_of(make, 1)
        answer = qualify(api, referred["id"], {"reference": "order-1042"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"].startswith("no-store")
        body = answer.json()
        assert set(body) == FIELDS
        assert (body["id"], body["email"], body["code"], body["referrer_id"]) == (
            referred["id"],
            referred["email"],
            code,
            owner.id,
        )
        assert (body["status"], body["reference"]) == ("qualified", "order-1042")
        assert datetime.fromisoformat(body["qualified_at"]).utcoffset() is not None
        listed = api.get("/referals/list", params={"user_id": owner.id}, headers=owner.auth).json()
        assert (listed[0]["status"], listed[0]["qualified_at"]) == ("qualified", body["qualified_at"])

    def test_no_body_at_all_is_fine(self, api, make):
        _, _, [referred] = referrals_of(make, 1)
        answer = api.post(f"/integration/referrals/{referred['id']}/qualify", headers=INTEGRATION)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["reference"]) == ("qualified", None)

    def test_a_second_call_answers_the_first_time_and_reference(self, api, make):
        _, _, [referred] = referrals_of(make, 1)
        first = qualify(api, referred["id"], {"reference": "first"}).json()
        again = qualify(api, referred["id"], {"reference": "second"})
        assert again.status_code == 200
        assert again.json() == first

    @pytest.mark.parametrize("referral_id", [999_999, 0, -1, 2**31, 10**30])
    def test_an_unknown_referral_is_404(self, api, referral_id):
        assert assert_problem(qualify(api, referral_id), 404)["type"].endswith("unknown-referral")

    @pytest.mark.parametrize(
        "body", [{"reference": "x" * 129}, {"reference": 42}, {"reference": ["a"]}, [], "text", None], ids=repr
    )
    def test_a_bad_body_is_422_and_changes_nothing(self, api, make, body):
        _, _, [referred] = referrals_of(make, 1)
        answer = api.post(
            f"/integration/referrals/{referred['id']}/qualify",
            content=json.dumps(body).encode(),
            headers={**INTEGRATION, "content-type": "application/json"},
        )
        assert_problem(answer, 422)
        assert qualify(api, referred["id"]).json()["reference"] is None  # still unqualified until now

    def test_bad_json_is_400(self, api, make):
        _, _, [referred] = referrals_of(make, 1)
        answer = api.post(
            f"/integration/referrals/{referred['id']}/qualify",
            content=b"{not json",
            headers={**INTEGRATION, "content-type": "application/json"},
        )
        assert_problem(answer, 400)

    def test_concurrent_calls_qualify_once_with_one_event(self, serve_app):
        client: LiveClient = serve_app(**WEBHOOKS)
        make = Factory(client)
        owner, _, [referred] = referrals_of(make, 1)
        answers = client.post_all(
            f"/integration/referrals/{referred['id']}/qualify",
            [{"json": {"reference": f"call-{n}"}, "headers": INTEGRATION} for n in range(CONCURRENCY)],
        )
        assert Counter(answer.status_code for answer in answers) == {200: CONCURRENCY}
        assert len({(answer.json()["qualified_at"], answer.json()["reference"]) for answer in answers}) == 1
        events = client.run(
            client.app.ctx.db.fetch_all(sa.select(outbox_event).where(outbox_event.c.type == "referral.qualified"))
        )
        [event] = events
        body = answers[0].json()
        assert json.loads(event["payload"])["data"] == {
            "referral_id": referred["id"],
            "referrer_id": owner.id,
            "code": body["code"],
            "qualified_at": body["qualified_at"],
            "reference": body["reference"],
        }
        stats = client.get("/refer/stats", headers=owner.auth).json()
        assert (stats["referrals"], stats["qualified"]) == (1, 1)


class TestList:
    def test_every_users_referrals_oldest_first(self, api, make):
        first_owner, first_code, first = referrals_of(make, 2)
        second_owner, second_code, second = referrals_of(make, 1)
        answer = api.get("/integration/referrals", headers=INTEGRATION)
        assert answer.status_code == 200
        assert answer.headers["cache-control"].startswith("no-store")
        body = answer.json()
        assert [row["id"] for row in body] == [row["id"] for row in (*first, *second)]
        assert all(set(row) == FIELDS for row in body)
        assert [(row["referrer_id"], row["code"]) for row in body] == [
            (first_owner.id, first_code),
            (first_owner.id, first_code),
            (second_owner.id, second_code),
        ]

    def test_keyset_pages_never_repeat_or_skip_a_row_while_rows_are_added(self, api, make):
        owner = make.user()
        code = make.code(owner)["code"]
        expected = [make.referral(code)["id"] for _ in range(5)]
        seen: list[int] = []
        after = 0
        for page_number in range(20):
            page = api.get("/integration/referrals", params={"after_id": after, "limit": 2}, headers=INTEGRATION)
            rows = page.json()
            if not rows:
                break
            seen += [row["id"] for row in rows]
            after = rows[-1]["id"]
            if page_number < 3:  # more arrive while the integrator pages
                expected.append(make.referral(code)["id"])
        assert seen == expected

    def test_a_status_filter(self, api, make):
        _, _, referred = referrals_of(make, 3)
        qualify(api, referred[1]["id"])
        qualified = api.get("/integration/referrals", params={"status": "qualified"}, headers=INTEGRATION).json()
        registered = api.get("/integration/referrals", params={"status": "registered"}, headers=INTEGRATION).json()
        assert [row["id"] for row in qualified] == [referred[1]["id"]]
        assert [row["id"] for row in registered] == [referred[0]["id"], referred[2]["id"]]

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 1001}, {"after_id": -1}, {"status": "paid"}, {"status": ""}, {"limit": "many"}],
        ids=repr,
    )
    def test_bad_queries_are_422(self, api, params):
        assert_problem(api.get("/integration/referrals", params=params, headers=INTEGRATION), 422)


class TestKeys:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"X-API-Key": "wrong-key-" + "x" * 40}, {"X-API-Key": TEST_INTEGRATION_KEY[:-1]}, {"X-API-Key": ""}],
        ids=["none", "wrong", "a prefix", "empty"],
    )
    def test_without_a_right_key_integration_answers_401(self, api, make, headers):
        _, _, [referred] = referrals_of(make, 1)
        for answer in (
            api.get("/integration/referrals", headers=headers),
            api.post(f"/integration/referrals/{referred['id']}/qualify", headers=headers),
        ):
            body = assert_problem(answer, 401)
            assert body["type"].endswith("bad-api-key")
            assert answer.headers["www-authenticate"].startswith("ApiKey")
            assert TEST_INTEGRATION_KEY not in answer.text
        assert api.get("/integration/referrals", headers=INTEGRATION).json()[0]["status"] == "registered"

    def test_a_users_token_never_opens_integration(self, api, make):
        owner, _, [referred] = referrals_of(make, 1)
        for headers in (owner.auth, owner.bearer):
            assert_problem(api.get("/integration/referrals", headers=headers), 401)
            assert_problem(api.post(f"/integration/referrals/{referred['id']}/qualify", headers=headers), 401)

    def test_a_key_never_opens_a_users_routes(self, api, make):
        owner = make.user()
        assert_problem(api.get("/refer/stats", headers=INTEGRATION), 401)
        assert_problem(api.post("/refer/update_code", json={"day": 3}, headers=INTEGRATION), 401)
        assert_problem(api.get("/referals/list", params={"user_id": owner.id}, headers=INTEGRATION), 401)
        bearer_key = {"Authorization": f"Bearer {TEST_INTEGRATION_KEY}"}
        assert_problem(api.get("/refer/stats", headers=bearer_key), 401)

    def test_without_integration_keys_every_key_is_refused(self, serve_app):
        client: LiveClient = serve_app(integration_keys="")
        assert_problem(client.get("/integration/referrals", headers=INTEGRATION), 401)
        assert_problem(client.get("/integration/referrals", headers={"X-API-Key": ""}), 401)

    def test_any_of_several_keys_opens_integration(self, serve_app):
        other = "another-integration-key-" + "y" * 20
        client: LiveClient = serve_app(integration_keys=f"{TEST_INTEGRATION_KEY}, {other}")
        for key in (TEST_INTEGRATION_KEY, other):
            assert client.get("/integration/referrals", headers={"X-API-Key": key}).status_code == 200

    def test_requests_are_limited_per_key_and_wrong_keys_per_address(self, serve_app):
        client: LiveClient = serve_app(rate_limit=True, rate_limit_ip="3/minute")
        wrong = {"X-API-Key": "wrong-key-" + "z" * 40}
        assert [client.get("/integration/referrals", headers=wrong).status_code for _ in range(4)] == [
            401,
            401,
            401,
            429,
        ]
        assert [client.get("/integration/referrals", headers=INTEGRATION).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
