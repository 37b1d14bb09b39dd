"""GET /metrics: the counters move for the right labels, the gauges read the pool, the hasher, Redis and the
process, the build is named, the switch and the token work, and with two worker processes every worker's counts
are added up (worker restarts and live workers: tests/test_workers.py)."""

from __future__ import annotations

import asyncio
import json
import platform
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sanic import __version__

import referral
from referral.metrics import LATENCY_BUCKETS, SAMPLE_SECONDS
from tests.databases import SQLiteTemplate
from tests.factories import Factory, random_email
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.support import ROOT, running_server, server_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ONE_A_MINUTE = {"rate_limit_user": "1/minute", "rate_limit_login": "1/minute"}  # a user's writes, an email's logins


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Any, **kwargs: Any) -> Samples:
    answer = client.get("/metrics", **kwargs) if isinstance(client, LiveClient) else client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, route: str, method: str, status: int) -> float:
    return value(samples, "referral_http_requests_total", route=route, method=method, status=str(status))


@pytest.mark.sqlite_only
def test_requests_are_counted_by_route_method_and_status_with_their_latency(api):
    before = scrape(api)
    for _ in range(3):
        assert api.get("/refer/getcode", params={"email": random_email()}).status_code == 404
    assert api.post("/refer/getcode", json={"email": "nope"}).status_code == 422
    assert api.get("/no/such/page").status_code == 404
    assert api.request("BREW", "/health").status_code in (404, 405)
    after = scrape(api)

    assert requests_of(after, "/refer/getcode", "GET", 404) - requests_of(before, "/refer/getcode", "GET", 404) == 3
    assert requests_of(after, "/refer/getcode", "POST", 422) - requests_of(before, "/refer/getcode", "POST", 422) == 1
    assert requests_of(after, "unmatched", "GET", 404) - requests_of(before, "unmatched", "GET", 404) == 1
    assert not any(dict(labels).get("method") == "BREW" for _, labels in after)  # unknown methods: "other"
    assert requests_of(after, "/metrics", "GET", 200) - requests_of(before, "/metrics", "GET", 200) == 1

    def latency(samples: Samples, suffix: str, **labels: str) -> float:
        return value(samples, f"referral_http_request_duration_seconds_{suffix}", route="/refer/getcode", **labels)

    assert latency(after, "count") - latency(before, "count") == 4
    assert 0 < latency(after, "sum") - latency(before, "sum") < 30
    assert latency(after, "bucket", le="+Inf") - latency(before, "bucket", le="+Inf") == 4
    assert len(
        {labels for name, labels in after if name.endswith("_bucket") and ("route", "/refer/getcode") in labels}
    ) == (len(LATENCY_BUCKETS) + 1)


@pytest.mark.sqlite_only
def test_a_client_that_hangs_up_is_a_499_not_a_500(serve_app, capsys):
    """nginx's convention: a client gone before its answer is no server error (a load balancer's timeout
    would otherwise page someone), in the access line and in the metrics."""
    served = serve_app(bcrypt_rounds=12)  # a login hashes for a few hundred milliseconds

    async def hang_up() -> None:
        async with httpx.AsyncClient(base_url=served.base_url, timeout=0.05) as impatient:
            with pytest.raises(httpx.TimeoutException):
                await impatient.post("/user/auth", json={"email": random_email(), "password": "a-fine-passphrase"})
        await asyncio.sleep(0.5)  # the server notices the closed connection

    capsys.readouterr()
    served.run(hang_up())
    samples = scrape(served)
    assert requests_of(samples, "/user/auth", "POST", 499) == 1
    assert requests_of(samples, "/user/auth", "POST", 500) == 0
    lines = capsys.readouterr().err
    assert "POST /user/auth 499 " in lines
    assert "Traceback" not in lines


@pytest.mark.sqlite_only
def test_code_cache_hits_and_misses(api, make):
    owner = make.user()
    make.code(owner)
    before = scrape(api)
    for _ in range(3):
        assert api.get("/refer/getcode", params={"email": owner.email}).status_code == 200
    after = scrape(api)
    name = "referral_code_cache_lookups_total"
    assert value(after, name, result="miss") - value(before, name, result="miss") == 1
    assert value(after, name, result="hit") - value(before, name, result="hit") == 2


@pytest.mark.sqlite_only
def test_rate_limit_rejections_by_scope(serve_app):
    limited = serve_app(rate_limit=True, rate_limit_ip="2/minute", **ONE_A_MINUTE)
    before = scrape(limited)
    statuses = [limited.get("/refer/getcode", params={"email": random_email()}).status_code for _ in range(4)]
    assert statuses == [404, 404, 429, 429]
    after = scrape(limited)
    name = "referral_rate_limit_rejections_total"
    assert value(after, name, scope="getcode") - value(before, name, scope="getcode") == 2
    assert value(after, name, scope="user") == value(before, name, scope="user")


@pytest.mark.sqlite_only
def test_user_and_login_rejections_are_counted_apart(serve_app):
    open_api = serve_app()
    owner = Factory(open_api).user()
    limited = serve_app(rate_limit=True, rate_limit_ip="100/minute", **ONE_A_MINUTE)
    before = scrape(limited)
    assert [limited.post("/refer/delete", headers=owner.bearer).status_code for _ in range(2)] == [404, 429]
    wrong = {"email": owner.email, "password": "not-the-password"}
    assert [limited.post("/user/auth", json=wrong).status_code for _ in range(2)] == [401, 429]
    after = scrape(limited)
    name = "referral_rate_limit_rejections_total"
    assert value(after, name, scope="user") - value(before, name, scope="user") == 1
    assert value(after, name, scope="login") - value(before, name, scope="login") == 1
    assert value(after, name, scope="auth") == value(before, name, scope="auth")


@pytest.mark.sqlite_only
def test_password_hash_rejections_per_client_per_network_and_queue_full(serve_app):
    name = "referral_password_hash_rejections_total"

    def storm(client: LiveClient, count: int) -> list[int]:
        credentials = {"email": random_email(), "password": "not-the-password"}
        return [answer.status_code for answer in client.post_all("/user/auth", [{"json": credentials}] * count)]

    for caps, status, reason in (
        ({"hash_concurrency_per_ip": 1}, 429, "per_client"),
        ({"hash_concurrency_per_ip": 10, "hash_concurrency_per_network": 1}, 429, "per_network"),
        ({"hash_concurrency_per_ip": 10, "hash_queue_max": 1}, 503, "queue_full"),
    ):
        client = serve_app(rate_limit=True, rate_limit_login="100/minute", bcrypt_rounds=10, **caps)
        before = scrape(client)
        statuses = storm(client, 6)
        after = scrape(client)
        assert statuses.count(status) >= 1, reason
        assert value(after, name, reason=reason) - value(before, name, reason=reason) == statuses.count(status)


def test_pool_and_hash_queue_gauges(api, settings, monkeypatch):
    samples = scrape(api)
    assert value(samples, "referral_db_pool_connections_max") == settings.db_pool_size
    assert 0 <= value(samples, "referral_db_pool_connections_in_use") <= settings.db_pool_size
    assert value(samples, "referral_password_hash_queue") == 0
    monkeypatch.setattr(api.app.ctx.hasher, "_queued", 3)  # as if three hashes were waiting
    assert value(scrape(api), "referral_password_hash_queue") == 3


@pytest.mark.sqlite_only
def test_metrics_off_removes_the_route(serve_app):
    off = serve_app(metrics=False)
    assert_problem(off.get("/metrics"), 404)
    assert not [route for route in off.app.router.routes if route.path == "metrics"]
    assert off.get("/health").headers["x-request-id"]


@pytest.mark.sqlite_only
def test_metrics_token_is_required_when_set(serve_app, caplog):
    token = "a-metrics-token-for-the-scraper"
    guarded = serve_app(metrics_token=token)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": token},  # the bare token: the Bearer scheme is required
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": "Bearer ünïcode".encode()},
    ):
        answer = guarded.get("/metrics", headers=headers)
        body = assert_problem(answer, 401)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "referral_http_requests_total" not in answer.text
        assert token not in body["detail"]
    answer = guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert "referral_http_requests_total" in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"
    refused = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "metrics_token_refused"]
    assert len(refused) == 6
    assert token not in caplog.text


# -- two worker processes --------------------------------------------------------------------------


def test_two_workers_add_up(sqlite_template: SQLiteTemplate, tmp_path: Path):
    """`python -m referral` with WORKERS=2: requests land on both workers, /metrics (answered by either)
    counts them all, the gauges sum both pools, and the directory the counts were kept in goes at exit."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    log = tmp_path / "server.log"
    url = sqlite_template.fresh_url(tmp_path)
    env = server_env(TMPDIR=str(scratch), DATABASE_URL=url, WORKERS="2", DB_POOL_SIZE="3", LOG_FORMAT="json")
    with running_server(env, cwd=tmp_path, log=log) as (base_url, server):
        [directory] = scratch.glob("referral-metrics-*")
        sent, pids = 0, set()
        while len(pids) < 2 and sent < 400:  # new connections land on either worker
            for _ in range(20):
                with httpx.Client() as client:
                    assert client.get(f"{base_url}/refer/getcode", params={"email": random_email()}).status_code == 404
            sent += 20
            lines = log.read_text().splitlines()
            bad = [line for line in lines if not line.startswith("{")]
            assert not bad, bad
            pids = {
                document["pid"]
                for line in lines
                if (document := json.loads(line))["logger"] == "referral.access"
                and document["path"] == "/refer/getcode"
            }
        assert len(pids) == 2, "every request went to one worker"
        time.sleep(SAMPLE_SECONDS + 0.5)  # each worker adds its counts to the shared files every second
        assert len({path.name.split("_")[-1] for path in directory.glob("counter_*.db")}) == 2
        for _ in range(4):  # whichever worker answers, the totals are the same
            with httpx.Client(base_url=base_url) as client:
                samples = scrape(client)
            assert requests_of(samples, "/refer/getcode", "GET", 404) == sent
            assert value(samples, "referral_code_cache_lookups_total", result="miss") == sent
            assert value(samples, "referral_http_request_duration_seconds_count", route="/refer/getcode") == sent
            assert value(samples, "referral_db_pool_connections_max") == 2 * 3
    assert server.returncode == 0
    assert not directory.exists()


def test_one_worker_keeps_its_metrics_in_memory(sqlite_template: SQLiteTemplate, tmp_path: Path):
    """WORKERS=1: no multiprocess directory (no file written on every request), and the counts are served."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = server_env(TMPDIR=str(scratch), DATABASE_URL=sqlite_template.fresh_url(tmp_path))
    with running_server(env, cwd=tmp_path) as (base_url, _), httpx.Client(base_url=base_url) as client:
        for _ in range(3):
            assert client.get("/refer/getcode", params={"email": random_email()}).status_code == 404
        assert requests_of(scrape(client), "/refer/getcode", "GET", 404) == 3
        assert not list(scratch.glob("referral-metrics-*"))


def test_an_operators_multiprocess_directory_is_emptied_at_start_and_kept(
    sqlite_template: SQLiteTemplate, tmp_path: Path
):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_99999.db").write_bytes(b"stale values of an earlier run")
    env = server_env(PROMETHEUS_MULTIPROC_DIR=str(directory), DATABASE_URL=sqlite_template.fresh_url(tmp_path))
    with running_server(env, cwd=tmp_path) as (base_url, _), httpx.Client(base_url=base_url) as client:
        assert requests_of(scrape(client), "/health", "GET", 200) >= 1
        assert not (directory / "counter_99999.db").exists()
    assert directory.is_dir()


# -- what an operator alerts on ----------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_build_info_and_this_processs_memory_and_cpu(api):
    """In one process (no workers): worker "main"; no Redis gauge without REDIS_URL, no main-process counts."""
    samples = scrape(api)
    [(name, labels)] = [key for key in samples if key[0] == "referral_build_info"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dict(labels) == {"version": pyproject["version"], "python": platform.python_version(), "sanic": __version__}
    assert referral.__version__ == pyproject["version"]
    assert samples[(name, labels)] == 1
    process = psutil.Process()
    memory = value(samples, "referral_worker_resident_memory_bytes", worker="main")
    assert abs(memory - process.memory_info().rss) < process.memory_info().rss * 0.2
    cpu = value(samples, "referral_worker_cpu_seconds_total", worker="main")
    assert 0 < cpu <= sum(process.cpu_times()[:2]) + 0.01
    names = {name for name, _ in samples}
    assert not names & {"referral_redis_up", "referral_worker_restarts_total", "referral_workers"}


@pytest.mark.sqlite_only
def test_redis_up_follows_the_breaker(serve_app, service_name, redis_proxy, proxied_redis_url):
    client = serve_app(redis_url=proxied_redis_url, service_name=service_name, redis_timeout_ms=200)
    assert value(scrape(client), "referral_redis_up", worker="main") == 1
    redis_proxy.cut()
    assert client.get("/refer/getcode", params={"email": random_email()}).status_code == 404  # the cache fails
    assert value(scrape(client), "referral_redis_up", worker="main") == 0
    redis_proxy.restore()
    deadline = time.monotonic() + 10
    while value(scrape(client), "referral_redis_up", worker="main") == 0:
        assert time.monotonic() < deadline, "still down 10 s after Redis came back"
        time.sleep(0.1)
