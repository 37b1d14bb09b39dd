"""Rate limits: per client IP on the public endpoints, per email on failed logins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from referral.app import create_app
from referral.config import Settings
from tests.factories import random_email
from tests.live import LiveClient
from tests.problems import assert_problem


@pytest.fixture
def limited_api(settings: Settings) -> Iterator[LiveClient]:
    limited = settings.with_overrides(rate_limit=True, rate_limit_ip="5/minute", rate_limit_login="3/minute")
    client = LiveClient(create_app(settings=limited))
    client.start()
    yield client
    client.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/user/register", {"email": "x", "password": "y"}),
        ("POST", "/user/auth", {"email": "x", "password": "y"}),
        ("GET", "/refer/getcode?email=a@example.com", None),
        ("POST", "/refer/getcode", {"email": "a@example.com"}),
        ("POST", "/referals/register", {"email": "a@example.com", "code": "NOPE-NOPE"}),
    ],
)
@pytest.mark.sqlite_only
def test_per_ip_limit(limited_api, method, path, body):
    for _ in range(5):
        assert limited_api.request(method, path, json=body).status_code != 429
    answer = limited_api.request(method, path, json=body)
    assert_problem(answer, 429)
    assert 1 <= int(answer.headers["retry-after"]) <= 60


@pytest.mark.sqlite_only
def test_per_ip_limit_on_the_token_endpoint_answers_in_oauth_form(limited_api):
    def form() -> dict[str, str]:
        return {"grant_type": "password", "username": random_email(), "password": "password1"}

    for _ in range(5):
        assert limited_api.post("/user/token", data=form()).status_code == 400
    answer = limited_api.post("/user/token", data=form())
    assert answer.status_code == 429
    assert answer.json()["error"] == "slow_down"
    assert "retry-after" in answer.headers


@pytest.mark.sqlite_only
def test_scopes_are_counted_apart(limited_api):
    for _ in range(5):
        limited_api.get("/refer/getcode", params={"email": random_email()})
    assert (
        limited_api.post("/user/register", json={"email": random_email(), "password": "password1"}).status_code == 201
    )


def test_failed_logins_lock_the_email_only(limited_api):
    email, password = random_email(), "right-password"
    limited_api.post("/user/register", json={"email": email, "password": password})
    for _ in range(3):
        assert_problem(limited_api.post("/user/auth", json={"email": email, "password": "wrong-password"}), 401)
    locked = limited_api.post("/user/auth", json={"email": email.upper(), "password": password})
    assert_problem(locked, 429)
    other = random_email()
    limited_api.post("/refer/getcode", json={"email": other})  # keeps the per-IP count apart from logins
    assert_problem(limited_api.post("/user/auth", json={"email": other, "password": "wrong-password"}), 401)


def test_successful_logins_do_not_count(limited_api, settings):
    email, password = random_email(), "right-password"
    limited_api.post("/user/register", json={"email": email, "password": password})
    for _ in range(4):
        assert limited_api.post("/user/auth", json={"email": email, "password": password}).status_code == 200


def test_off_switch(api):
    for _ in range(30):
        assert api.get("/refer/getcode", params={"email": "a@example.com"}).status_code == 404
