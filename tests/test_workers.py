"""Workers that come back (`referral.workers`), for real: `python -m referral` with two workers, one killed with
SIGKILL under load, is serving again with a new worker within 10 s, logged and counted, and a SIGTERM after that
still stops everything with status 0; a worker killed again and again stops the service with exit status 3."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import random_email
from tests.test_metrics import parse, value
from tests.test_stop import TROUBLE, Server, start

REPLACED_WITHIN = 10.0


def documents(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]


def serving_pids(server: Server) -> list[int]:
    """The pids that answered a request, in the order of the access log."""
    return [doc["pid"] for doc in documents(server) if doc["logger"] == "referral.access"]


def ready_pids(server: Server) -> list[int]:
    """Each worker's pid as it became ready (Sanic's "Worker ready [pid]")."""
    return [doc["pid"] for doc in documents(server) if doc["message"].startswith("Worker ready")]


def wait(condition, seconds: float, what: str, server: Server) -> float:
    """Seconds until `condition()` held."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, f"no {what} within {seconds} s:\n{server.output}"
        time.sleep(0.02)
    return time.monotonic() - began


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


@contextlib.contextmanager
def under_load(server: Server) -> Iterator[list[int]]:
    """A thread sending getcode requests, each on a new connection (so either worker takes it): the statuses
    answered (a connection cut by the kill is not one)."""
    statuses: list[int] = []
    stopped = threading.Event()

    def send() -> None:
        while not stopped.is_set():
            try:
                answer = httpx.get(f"{server.base_url}/refer/getcode", params={"email": random_email()}, timeout=5)
                statuses.append(answer.status_code)
            except httpx.TransportError:
                time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stopped.set()
        thread.join()


def scrape(server: Server) -> dict:
    answer = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


def test_a_worker_killed_under_load_serves_again_within_10_s_logged_and_counted(sqlite_template, servers, tmp_path):
    url = sqlite_template.fresh_url(tmp_path)
    server = start(servers, tmp_path, DATABASE_URL=url, WORKERS="2", DB_POOL_SIZE="3", LOG_FORMAT="json")
    server.wait_for("Worker ready", count=2)
    with under_load(server) as statuses:
        wait(lambda: len(set(serving_pids(server))) == 2, 60, "requests answered by both workers", server)
        before = set(serving_pids(server))
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        seconds = wait(lambda: set(serving_pids(server)) - before, REPLACED_WITHIN, "answer of a new worker", server)
        answered = len(statuses)
        wait(lambda: len(statuses) > answered + 20, 10, "20 more answers", server)
    print(f"\nworker {victim} killed with SIGKILL: a new worker answered {seconds:.2f} s later")
    assert set(statuses) == {404}, set(statuses)
    [replacement] = set(serving_pids(server)) - before
    assert replacement in ready_pids(server)
    [died] = [doc for doc in documents(server) if doc["logger"] == "referral.workers"]
    assert died["level"] == "ERROR"
    assert died["pid"] == server.process.pid
    assert died["message"].startswith("worker Srv")
    assert died["message"].endswith(f"(pid {victim}) died: killed by SIGKILL; restarting it"), died

    def metrics_settled() -> bool:  # the main process counts the live workers every 0.1 s
        samples = scrape(server)
        return value(samples, "referral_workers") == 2 and value(samples, "referral_worker_restarts_total") == 1

    wait(metrics_settled, 5, "2 live workers and 1 restart in /metrics", server)
    samples = scrape(server)
    memory = {dict(labels)["worker"] for name, labels in samples if name == "referral_worker_resident_memory_bytes"}
    assert memory == {"Srv 0", "Srv 1"}  # the dead worker's gauges left the sums
    assert value(samples, "referral_db_pool_connections_max") == 2 * 3

    server.signal_main(signal.SIGTERM)  # a stop after a restart is a normal stop
    assert server.wait_gone(seconds=20) == 0, server.output
    assert not TROUBLE.search(server.output), server.output
    assert len([doc for doc in documents(server) if doc["logger"] == "referral.workers"]) == 1


def test_a_stop_while_a_replacement_starts_waits_for_it_then_stops_everything(sqlite_template, servers, tmp_path):
    """The stop signal is held until the new worker serves (`referral.lifecycle.EarlyStop`): none is left behind."""
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", LOG_FORMAT="json")
    wait(lambda: len(ready_pids(server)) == 2, 60, "two workers ready", server)
    os.kill(ready_pids(server)[0], signal.SIGKILL)
    server.wait_for("restarting it")
    server.signal_main(signal.SIGTERM)

    assert server.wait_gone(seconds=30) == 0, server.output
    assert len(ready_pids(server)) == 3, server.output
    assert not TROUBLE.search(server.output), server.output


def test_a_worker_that_keeps_dying_stops_the_service_with_exit_status_3(sqlite_template, servers, tmp_path: Path):
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", LOG_FORMAT="json")
    wait(lambda: len(ready_pids(server)) == 2, 60, "two workers ready", server)
    for death in range(1, 6):
        os.kill(ready_pids(server)[-1], signal.SIGKILL)
        if death < 5:
            wait(lambda death=death: len(ready_pids(server)) == 2 + death, 15, f"replacement {death}", server)

    assert server.wait_gone(seconds=30) == 3, server.output
    lines = [doc for doc in documents(server) if doc["logger"] == "referral.workers"]
    assert [line["message"].endswith("restarting it") for line in lines] == [True] * 4 + [False]
    assert lines[-1]["message"].endswith(
        "died: killed by SIGKILL; 5 worker deaths within 60 s: stopping the service (exit status 3)"
    ), lines[-1]
    assert "Traceback" not in server.output, server.output
