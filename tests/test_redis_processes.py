"""Several instances for real: separate `python -m referral` processes on one PostgreSQL database and one
Redis, and Redis outages through a TCP proxy the test cuts, stalls and restores.

Each test gets a SERVICE_NAME of its own, which prefixes every Redis key of the service, so tests (and
test runs) sharing one Redis never see each other's keys; the keys are deleted at the end.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from referral.cache import email_key
from referral.redis_link import BACK_MESSAGE, OUTAGE_MESSAGE
from tests.conftest import TEST_SECRET
from tests.databases import migrate
from tests.factories import Factory, random_email
from tests.support import (
    REDIS_URL,
    ThrowawayPostgres,
    free_port,
    server_env,
    start_server,
    stop_server,
    wait_until_healthy,
)

# Long enough that a machine busy with other tests never trips the breaker where sharing is asserted
# (a cut proxy fails at once anyway); the stalled-Redis test sets its own.
PATIENT = {"REDIS_TIMEOUT_MS": "3000"}


@pytest.fixture(scope="module")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """One migrated database for the module's instances (every test uses emails of its own)."""
    with ThrowawayPostgres("referral_instances") as database:
        migrate(database.url)
        yield database.url


@dataclass
class Instance:
    """One `python -m referral` process and an HTTP client to it (a fresh client per instance)."""

    base_url: str
    log: Path
    process: subprocess.Popen
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=10)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.http.request(method, path, **kwargs)
        assert answer.status_code < 500, f"{method} {path}: {answer.status_code} {answer.text}\n{self.log_text()}"
        return answer

    def getcode(self, email: str) -> httpx.Response:
        return self.request("GET", "/refer/getcode", params={"email": email})

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_count(self, text: str) -> int:
        return sum(text in line for line in self.log_text().splitlines())


@pytest.fixture
def start(postgres_url: str, service_name: str, tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start an instance: `start(REDIS_URL=..., RATE_LIMIT="on", ...)`; each is stopped at the end."""
    yield from instances_on(postgres_url, None, service_name, tmp_path)


@pytest.fixture
def start_on_backend(
    database: tuple[str, str | None], service_name: str, tmp_path: Path
) -> Iterator[Callable[..., Instance]]:
    """`start`, on the test's own database of each backend (SQLite: a file both instances open)."""
    yield from instances_on(*database, service_name, tmp_path)


def instances_on(
    database_url: str, schema: str | None, service_name: str, tmp_path: Path
) -> Iterator[Callable[..., Instance]]:
    instances: list[Instance] = []

    def start_instance(**env: str) -> Instance:
        log = tmp_path / f"instance-{len(instances)}.log"
        # One SECRET_KEY (server_env's): each instance accepts the other's tokens.
        environment = server_env(
            DATABASE_URL=database_url, DB_SCHEMA=schema, SERVICE_NAME=service_name, **{"RATE_LIMIT": "off", **env}
        )
        with log.open("wb") as output:
            # in tmp_path: no .env there
            process = start_server([sys.executable, "-m", "referral"], cwd=tmp_path, env=environment, output=output)
        base_url = f"http://127.0.0.1:{environment['PORT']}"
        instance = Instance(base_url, log, process)
        instances.append(instance)
        wait_until_healthy(base_url, process, seconds=30, log=log)
        return instance

    yield start_instance
    for instance in instances:
        instance.http.close()
        stop_server(instance.process, seconds=10)
    for instance in instances:
        assert "Traceback" not in instance.log_text(), instance.log_text()


def cache_key(service_name: str, email: str) -> str:
    """The Redis key of `email`'s cached code in an instance of these tests (SECRET_KEY=TEST_SECRET)."""
    return f"{service_name}:code:{email_key(email, TEST_SECRET)}"


def wait_for_log(instance: Instance, text: str, *, count: int = 1, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while instance.log_count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} (x{count}) in the log:\n{instance.log_text()}"
        time.sleep(0.05)


def test_two_instances_see_each_others_code_writes_on_the_very_next_request(start, redis_client, service_name):
    a = start(REDIS_URL=REDIS_URL, **PATIENT)
    b = start(REDIS_URL=REDIS_URL, **PATIENT)
    account = Factory(a.http).user()
    current = a.request("POST", "/refer/update_code", json={"day": 3}, headers=account.auth).json()
    for turn in range(30):
        writer, reader = (a, b) if turn % 2 == 0 else (b, a)
        for instance in (reader, writer, reader):  # both look it up, so that it is cached (in Redis)
            assert instance.getcode(account.email).json() == current
        assert redis_client.exists(cache_key(service_name, account.email))  # the cache is in Redis
        if turn % 3 == 2:  # an edit: same code, new expiry
            answer = writer.request("POST", "/refer/update_code", json={"day": 10 + turn}, headers=account.auth)
            assert answer.status_code == 200
        else:  # a new custom code
            body = {"day": 2, "code": f"turn{turn}-{secrets.token_hex(3)}"}
            answer = writer.request("POST", "/refer/update_code", json=body, headers=account.auth)
            assert answer.status_code == 201
        assert answer.json() != current
        current = answer.json()
        seen = reader.getcode(account.email)
        assert (seen.status_code, seen.json()) == (200, current), f"turn {turn}: the reader served the old code"
    for instance in (a, b):
        assert instance.getcode(account.email).json() == current
    deleted = a.request("DELETE", "/refer/delete", headers=account.auth)
    assert deleted.json() == current
    assert b.getcode(account.email).status_code == 404
    assert a.getcode(account.email).status_code == 404


def test_two_instances_share_a_rate_limit(start):
    settings = {"REDIS_URL": REDIS_URL, "RATE_LIMIT": "on", "RATE_LIMIT_IP": "5/minute", **PATIENT}
    a = start(**settings)
    b = start(**settings)
    statuses = [(a, b)[n % 2].getcode(random_email()).status_code for n in range(7)]
    assert statuses == [404] * 5 + [429] * 2


def test_a_redis_outage_keeps_every_answer_right_warns_once_and_ends_by_itself(
    start, redis_client, service_name, redis_proxy, proxied_redis_url
):
    settings = {"REDIS_URL": proxied_redis_url, "RATE_LIMIT": "on", "RATE_LIMIT_IP": "20/minute", **PATIENT}
    a = start(**settings)
    b = start(**settings)
    account = Factory(a.http).user()  # auth: 1 of 20 in Redis
    first = a.request("POST", "/refer/update_code", json={"day": 3}, headers=account.auth).json()
    assert b.getcode(account.email).json() == first
    assert a.getcode(account.email).json() == first
    assert redis_client.exists(cache_key(service_name, account.email))  # cached in Redis before the cut

    redis_proxy.cut()
    answers = []
    second = a.request("POST", "/refer/update_code", json={"day": 4, "code": "second-code"}, headers=account.auth)
    answers.append(second)
    assert second.status_code == 201
    for instance in (b, a, b):  # never the old code that Redis still holds
        answers.append(instance.getcode(account.email))
        assert answers[-1].json() == second.json()
    answers.append(a.request("DELETE", "/refer/delete", headers=account.auth))
    assert answers[-1].status_code == 200
    for instance in (b, a):
        answers.append(instance.getcode(account.email))
        assert answers[-1].status_code == 404
    third = a.request("POST", "/refer/update_code", json={"day": 5, "code": "third-code"}, headers=account.auth)
    assert third.status_code == 201
    answers.append(b.getcode(account.email))
    assert answers[-1].json() == third.json()
    # the limits go on in process: B has counted 4 getcode requests since the cut, 16 more are allowed
    limited = [b.getcode(random_email()).status_code for _ in range(17)]
    assert limited == [404] * 16 + [429]
    assert max(answer.elapsed.total_seconds() for answer in answers) < 1.5
    for instance in (a, b):
        assert instance.log_count(OUTAGE_MESSAGE) == 1, instance.log_text()  # once, not once per request
    assert account.email not in a.log_text() + b.log_text()

    redis_proxy.restore()
    for instance in (a, b):
        wait_for_log(instance, BACK_MESSAGE)
    # next-request consistency again: the cache is in Redis and writes reach the other instance
    fourth = a.request("POST", "/refer/update_code", json={"day": 6, "code": "fourth-code"}, headers=account.auth)
    for instance in (b, a, b):
        assert instance.getcode(account.email).json() == fourth.json()
    assert redis_client.exists(cache_key(service_name, account.email))
    fifth = b.request("POST", "/refer/update_code", json={"day": 7, "code": "fifth-code"}, headers=account.auth)
    assert a.getcode(account.email).json() == fifth.json()
    # the limits are shared again: 1 auth before the cut, 19 more from either instance, then 429
    unknown = [{"email": random_email(), "password": "x" * 12} for _ in range(20)]
    statuses = [(a, b)[n % 2].request("POST", "/user/auth", json=body).status_code for n, body in enumerate(unknown)]
    assert statuses == [401] * 19 + [429]

    redis_proxy.cut()  # a second outage: a second warning from each
    sixth = b.request("POST", "/refer/update_code", json={"day": 8, "code": "sixth-code"}, headers=account.auth)
    assert a.getcode(account.email).json() == sixth.json()
    redis_proxy.restore()
    for instance in (a, b):
        wait_for_log(instance, BACK_MESSAGE, count=2)
        assert instance.log_count(OUTAGE_MESSAGE) == 2
    for instance in (a, b):
        assert instance.getcode(account.email).json() == sixth.json()


def test_a_redis_that_hangs_costs_one_short_timeout_not_a_stall(start, redis_proxy, proxied_redis_url):
    instance = start(REDIS_URL=proxied_redis_url, RATE_LIMIT="on", REDIS_TIMEOUT_MS="1000")
    account = Factory(instance.http).user()
    code = instance.request("POST", "/refer/update_code", json={"day": 3}, headers=account.auth).json()
    redis_proxy.stall()  # connections accepted, never answered
    answers = [instance.getcode(account.email) for _ in range(10)]
    assert [answer.json() for answer in answers] == [code] * 10
    assert answers[0].elapsed.total_seconds() < 2.5  # the first pays one timeout (1 s)...
    assert max(answer.elapsed.total_seconds() for answer in answers[1:]) < 0.9  # ...the others skip Redis
    assert instance.log_count(OUTAGE_MESSAGE) == 1
    redis_proxy.restore()
    wait_for_log(instance, BACK_MESSAGE)
    assert instance.getcode(account.email).json() == code


def test_redis_down_at_start(start):
    closed_port = free_port()  # nothing listens there
    instance = start(REDIS_URL=f"redis://127.0.0.1:{closed_port}/0", RATE_LIMIT="on")
    account = Factory(instance.http).user()  # a sign-up and a sign-in
    form = {"grant_type": "password", "username": account.email, "password": account.password}
    assert instance.request("POST", "/user/token", data=form).status_code == 200
    wrong = {"email": account.email, "password": "wrong-password"}
    assert instance.request("POST", "/user/auth", json=wrong).status_code == 401
    code = instance.request("POST", "/refer/update_code", json={"day": 3}, headers=account.auth)
    assert code.status_code == 201
    assert instance.getcode(account.email).json() == code.json()
    assert instance.getcode(account.email).json() == code.json()
    assert instance.request("DELETE", "/refer/delete", headers=account.auth).status_code == 200
    assert instance.getcode(account.email).status_code == 404
    assert instance.log_count(OUTAGE_MESSAGE) == 1, instance.log_text()
    assert account.email not in instance.log_text()


def test_two_instances_share_each_networks_hash_cap(start_on_backend, redis_client, service_name):
    """HASH_CONCURRENCY_PER_NETWORK=2 in Redis: while two logins from 127.0.0.0/24 hash on one instance (at
    BCRYPT_ROUNDS=14, about a second each), the other refuses a third from that network at once and checks
    one from 127.0.1.0/24; once the two end, the network's slots are back."""
    settings = {"REDIS_URL": REDIS_URL, "RATE_LIMIT": "on", "HASH_CONCURRENCY_PER_NETWORK": "2", **PATIENT}
    a = start_on_backend(BCRYPT_ROUNDS="14", **settings)
    b = start_on_backend(BCRYPT_ROUNDS="14", **settings)
    key = f"{service_name}:hash-slots:127.0.0.0/24"
    guess = {"email": random_email(), "password": "a-wrong-guess"}

    def login_from(instance: Instance, address: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=instance.base_url, timeout=60, transport=transport) as client:
            return client.post("/user/auth", json=guess)

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(login_from, a, address) for address in ("127.0.0.2", "127.0.0.3")]
        deadline = time.monotonic() + 30
        while redis_client.zcard(key) < 2:
            assert time.monotonic() < deadline, f"the slots never reached Redis:\n{a.log_text()}"
            time.sleep(0.01)
        refused = login_from(b, "127.0.0.4")
        elsewhere = login_from(b, "127.0.1.2")
        assert [future.result().status_code for future in held] == [401, 401]
    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"] == "Too many password checks from your network at once."
    assert refused.headers["retry-after"] == "1"
    assert elsewhere.status_code == 401, elsewhere.text
    assert not redis_client.exists(key)  # every slot given back
    assert login_from(b, "127.0.0.4").status_code == 401
