"""Rate limits: per client IP on the public endpoints, per email on failed logins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from referral.app import create_app
from referral.config import Settings
from tests.factories import random_email
from tests.live import LiveClient
from tests.problems import assert_problem

TIMES = 10  # requests of each kind, ten times the limit of one a minute


@pytest.fixture
def limited_api(settings: Settings) -> Iterator[LiveClient]:
    limited = settings.with_overrides(rate_limit=True, rate_limit_ip="5/minute", rate_limit_login="3/minute")
    with LiveClient(create_app(settings=limited)) as client:
        yield client


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
        return {"grant_type": "password", "username": random_email(), "password": "a-fine-passphrase"}

    for _ in range(5):
        assert limited_api.post("/user/token", data=form()).status_code == 400
    answer = limited_api.post("/user/token", data=form())
    assert answer.status_code == 429
    assert answer.json()["error"] == "slow_down"
    assert "retry-after" in answer.headers


@pytest.mark.sqlite_only
def test_scopes_are_counted_apart(limited_api):
    for _ in range(5):
        assert limited_api.get("/refer/getcode", params={"email": random_email()}).status_code == 404
    assert_problem(limited_api.get("/refer/getcode", params={"email": random_email()}), 429)
    answer = limited_api.post("/user/register", json={"email": random_email(), "password": "a-fine-passphrase"})
    assert answer.status_code == 201, answer.text


def test_failed_logins_lock_the_email_only(limited_api):
    email, password = random_email(), "right-password"
    limited_api.post("/user/register", json={"email": email, "password": password})
    for _ in range(3):
        assert_problem(limited_api.post("/user/auth", json={"email": email, "password": "wrong-password"}), 401)
    locked = limited_api.post("/user/auth", json={"email": email.upper(), "password": password})
    assert_problem(locked, 429)
    assert_problem(limited_api.post("/user/auth", json={"email": random_email(), "password": "wrong-password"}), 401)


def test_successful_logins_do_not_count(limited_api):
    email, password = random_email(), "right-password"
    limited_api.post("/user/register", json={"email": email, "password": password})
    for _ in range(4):
        assert limited_api.post("/user/auth", json={"email": email, "password": password}).status_code == 200


def past_one_a_minute(settings: Settings, *, rate_limit: bool) -> tuple[list[int], list[int]]:
    """Statuses of TIMES getcode requests, then TIMES failed logins of one email, under limits of one a minute."""
    tight = settings.with_overrides(rate_limit=rate_limit, rate_limit_ip="1/minute", rate_limit_login="1/minute")
    with LiveClient(create_app(settings=tight)) as api:
        email = random_email()
        assert api.post("/user/register", json={"email": email, "password": "right-password"}).status_code == 201
        getcode = [api.get("/refer/getcode", params={"email": email}).status_code for _ in range(TIMES)]
        wrong = {"email": email, "password": "wrong-password"}
        logins = [api.post("/user/auth", json=wrong).status_code for _ in range(TIMES)]
    return getcode, logins


def test_off_switch(settings):
    getcode, logins = past_one_a_minute(settings, rate_limit=False)
    assert getcode == [404] * TIMES
    assert logins == [401] * TIMES


def test_the_same_limits_apply_when_switched_on(settings):
    getcode, logins = past_one_a_minute(settings, rate_limit=True)
    assert getcode == [404] + [429] * (TIMES - 1)
    assert logins == [401] + [429] * (TIMES - 1)
