"""Rate limits: per client IP on the public endpoints, per email on failed logins."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from referral.config import Settings
from referral.ratelimit import SWEEP_SECONDS, InProcessCounters
from tests.factories import random_email
from tests.live import LiveClient, serve
from tests.problems import assert_problem

TIMES = 10  # requests of each kind, ten times the limit of one a minute


@pytest.fixture
def limited_api(settings: Settings) -> Iterator[LiveClient]:
    with serve(settings, rate_limit=True, rate_limit_ip="5/minute", rate_limit_login="3/minute") as client:
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
    with serve(settings, rate_limit=rate_limit, rate_limit_ip="1/minute", rate_limit_login="1/minute") as api:
        email = random_email()
        assert api.post("/user/register", json={"email": email, "password": "right-password"}).status_code == 201
        getcode = [api.get("/refer/getcode", params={"email": email}).status_code for _ in range(TIMES)]
        wrong = {"email": email, "password": "wrong-password"}
        logins = [api.post("/user/auth", json=wrong).status_code for _ in range(TIMES)]
    return getcode, logins


@pytest.mark.parametrize(("rate_limit", "after_the_first"), [(False, (404, 401)), (True, (429, 429))])
def test_the_off_switch_and_the_same_limits_when_switched_on(settings, rate_limit, after_the_first):
    getcode, logins = past_one_a_minute(settings, rate_limit=rate_limit)
    assert getcode == [404] + [after_the_first[0]] * (TIMES - 1)
    assert logins == [401] + [after_the_first[1]] * (TIMES - 1)


class SweepCounting(InProcessCounters):
    def __init__(self) -> None:
        super().__init__()
        self.sweeps = 0

    def _sweep(self, now: float) -> None:
        self.sweeps += 1
        super()._sweep(now)


def test_in_process_counters_cost_does_not_grow_with_the_clients(monkeypatch):
    """limits' MemoryStorage sweeps every key after each hit; ours at most once a second, and never
    starts a task (a hit from one client among 10,000 costs what it costs alone)."""
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # limits reads the same clock
    counters = SweepCounting()
    per_ip = parse("2/minute")
    limiter = SlidingWindowCounterRateLimiter(counters)

    async def hits(clients: int, network: int = 0) -> list[bool]:
        return [
            await limiter.hit(per_ip, "ip", "getcode", f"10.{network}.{n // 250}.{n % 250}") for n in range(clients)
        ]

    assert all(asyncio.run(hits(10_000)))
    assert counters.sweeps == 1
    assert counters.timer is None  # MemoryStorage's sweeping task was never started
    assert asyncio.run(hits(10_000)) == [True] * 10_000  # the second hit of each client: within 2/minute
    assert not any(asyncio.run(hits(10_000)))  # the third: refused
    assert counters.sweeps == 1
    clock[0] += SWEEP_SECONDS
    assert asyncio.run(hits(1, network=1)) == [True]
    assert counters.sweeps == 2
    assert len(counters.storage) == 10_001  # nothing expired yet: a window's hits count in the next one too

    clock[0] += 2 * 60
    assert asyncio.run(hits(1)) == [True]  # the first client again: its windows have passed
    assert counters.sweeps == 3
    assert len(counters.storage) == 1  # the other 9,999 clients' counters were swept


async def test_in_process_counters_allow_what_limits_own_storage_allows(monkeypatch):
    """The same sliding window as limits' MemoryStorage computes: hits at uneven times over five
    windows, refused and allowed alike by both."""
    clock = [1_000_020.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    per_ip = parse("5/minute")
    ours, theirs = (SlidingWindowCounterRateLimiter(storage) for storage in (InProcessCounters(), MemoryStorage()))
    steps = random.Random(7)
    answers = []
    for _ in range(400):
        clock[0] += steps.choice((0.1, 0.5, 2.0, 7.0, 31.0))
        client = steps.choice(("10.0.0.1", "10.0.0.2"))
        answers.append((await ours.hit(per_ip, "ip", client), await theirs.hit(per_ip, "ip", client)))
        assert await ours.get_window_stats(per_ip, "ip", client) == await theirs.get_window_stats(per_ip, "ip", client)
    assert [mine for mine, _ in answers] == [limits for _, limits in answers]
    assert 50 < sum(allowed for allowed, _ in answers) < 350  # both allowed and refused hits were compared


async def test_in_process_counters_give_back_never_below_zero():
    counters = InProcessCounters()
    failed_logins = parse("2/minute")
    limiter = FixedWindowRateLimiter(counters)
    key = failed_logins.key_for("login", "a@example.com", "127.0.0.1")
    assert await counters.decr(key) == 0  # nothing to give back: nothing is created
    assert key not in counters.storage
    taken = [await limiter.hit(failed_logins, "login", "a@example.com", "127.0.0.1") for _ in range(2)]
    assert await counters.decr(key) == 1
    assert [*taken, await limiter.hit(failed_logins, "login", "a@example.com", "127.0.0.1")] == [True, True, True]


def getcode_statuses(app_config: dict[str, object], settings: Settings, forwarded_for: list[str]) -> list[int]:
    client = serve(settings, rate_limit=True, rate_limit_ip="2/minute")
    client.app.config.update(app_config)
    with client as api:
        return [
            api.get("/refer/getcode", params={"email": "a@example.com"}, headers={"X-Forwarded-For": ip}).status_code
            for ip in forwarded_for
        ]


@pytest.mark.sqlite_only
def test_forwarded_addresses_are_ignored_without_proxy_settings(settings):
    """A stranger cannot dodge the per-IP limit by sending a new X-Forwarded-For each time."""
    assert getcode_statuses({}, settings, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [404, 404, 429]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("proxy", [{"PROXIES_COUNT": 1}, {"REAL_IP_HEADER": "x-forwarded-for"}])
def test_behind_a_proxy_each_forwarded_address_has_its_own_limit(settings, proxy):
    statuses = getcode_statuses(proxy, settings, ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.1"])
    assert statuses == [404, 404, 404, 404, 429]
