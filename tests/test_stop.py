"""Stopping and starting `python -m referral` for real. SIGTERM to the main process (Docker, Kubernetes,
systemd with KillMode=mixed): a login hashing when it arrives still gets its answer, the pools close, every
process exits with status 0 and nothing like a traceback. Ctrl-C (SIGINT to the whole process group): every
process exits within 15 s. A stop while the workers start is acted on once they serve (Sanic 25.12 alone
hung); several workers start on a fresh SQLite file (and on PostgreSQL: the SIGTERM test runs two workers on
each backend).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.support import server_env, start_server

PASSWORD = "a-fine-passphrase"
TROUBLE = re.compile(r"Traceback|Event loop (is closed|stopped)|database is locked|Killing|Experienced exception")


class Server:
    """`python -m referral` in a process group of its own, its output in a file."""

    def __init__(self, directory: Path, **env: str) -> None:
        environment = server_env(RATE_LIMIT="off", **env)
        self.port = int(environment["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"server-{self.port}.log"
        with self.log.open("w") as log:
            self.process = start_server([sys.executable, "-m", "referral"], cwd=directory, env=environment, output=log)

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, *, count: int = 1, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while self.output.count(text) < count:
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {count} x {text!r} within {seconds} s:\n{self.output}"
            time.sleep(0.02)

    def signal_main(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def signal_group(self, sig: signal.Signals) -> None:
        os.killpg(self.process.pid, sig)

    def wait_for_children(self, count: int, seconds: float = 30) -> None:
        """Until the main process has `count` children (Sanic's state manager, then each worker as it spawns)."""
        deadline = time.monotonic() + seconds
        while len(psutil.Process(self.process.pid).children()) < count:
            assert time.monotonic() < deadline, f"no {count} processes within {seconds} s:\n{self.output}"
            time.sleep(0.01)

    def wait_gone(self, seconds: float) -> int:
        """The exit status once the main process and every other process of its group are gone."""
        try:
            status = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {seconds} s after the signal:\n{self.output}")
        deadline = time.monotonic() + 5
        while group_alive(self.process.pid):
            assert time.monotonic() < deadline, f"processes of the group are left:\n{self.output}"
            time.sleep(0.05)
        return status

    def kill(self) -> None:
        if group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def start(servers: list[Server], directory: Path, **env: str) -> Server:
    server = Server(directory, **env)
    servers.append(server)
    return server


def send_login(port: int, email: str) -> socket.socket:
    """A login sent whole on a socket of its own: it is in the server's hands when this returns."""
    body = f'{{"email": "{email}", "password": "{PASSWORD}"}}'.encode()
    head = (
        f"POST /user/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(head + body)
    return connection


def read_status(connection: socket.socket) -> int:
    with connection:
        answer = b""
        while chunk := connection.recv(65_536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), answer
    return int(answer.split(b" ", 2)[1])


def postgres_sessions(url: str) -> int:
    """Sessions other than this one open on `url`'s database."""

    async def count() -> int:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()

    return asyncio.run(count())


def test_sigterm_to_the_main_process_lets_a_hashing_login_finish_then_everything_exits(
    database, backend, servers, tmp_path
):
    url, schema = database
    server = start(servers, tmp_path, DATABASE_URL=url, DB_SCHEMA=schema or "", WORKERS="2", BCRYPT_ROUNDS="12")
    server.wait_for("Worker ready", count=2)
    email = f"{backend}-stop@example.com"
    registered = httpx.post(f"{server.base_url}/user/register", json={"email": email, "password": PASSWORD}, timeout=30)
    assert registered.status_code == 201, registered.text

    login = send_login(server.port, email)
    time.sleep(0.1)  # accepted, and hashing: a bcrypt at cost 12 takes a few hundred milliseconds
    server.signal_main(signal.SIGTERM)

    assert read_status(login) == 200
    assert server.wait_gone(seconds=20) == 0, server.output
    assert not TROUBLE.search(server.output), server.output
    if backend == "sqlite":  # SQLite removes the WAL file when the last connection to it closes
        assert not Path(url.split("///", 1)[1] + "-wal").exists()
    else:
        assert postgres_sessions(url.replace("+asyncpg", "")) == 0


def test_ctrl_c_with_workers_serving_stops_everything_within_15_seconds(sqlite_template, servers, tmp_path):
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", BCRYPT_ROUNDS="12")
    server.wait_for("Worker ready", count=2)
    email = "ctrl-c@example.com"
    registered = httpx.post(f"{server.base_url}/user/register", json={"email": email, "password": PASSWORD}, timeout=30)
    assert registered.status_code == 201, registered.text
    # Requests in flight while the workers shut down (they may be cut: only SIGTERM promises answers): a
    # worker's second stop signal then lands in Sanic's shutdown (`referral.lifecycle.stop_once`).
    logins = [send_login(server.port, email) for _ in range(4)]
    time.sleep(0.1)
    server.signal_group(signal.SIGINT)

    assert server.wait_gone(seconds=15) == 0, server.output
    assert not TROUBLE.search(server.output), server.output
    for login in logins:
        login.close()


@pytest.mark.parametrize("moment", ["Goin' Fast", "Starting worker"])
def test_sigterm_while_the_workers_start_stops_them_once_they_serve(moment, sqlite_template, servers, tmp_path):
    """Before Sanic's manager exists (its banner), and while the workers start: with Sanic 25.12 alone the
    second hangs for ever in `WorkerManager.wait_for_ack` (see `referral.lifecycle.EarlyStop`)."""
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", BCRYPT_ROUNDS="4")
    server.wait_for(moment)
    server.signal_main(signal.SIGTERM)

    assert server.wait_gone(seconds=30) == 0, server.output
    assert not TROUBLE.search(server.output), server.output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", server.port))  # free again


def test_ctrl_c_while_the_workers_start_stops_them_once_they_serve(sqlite_template, servers, tmp_path):
    """Each worker ignores stop signals from the app factory on (`referral.lifecycle.ignore_stop_signals`):
    killed while it starts, it would never acknowledge, and Sanic would end the start with SIGKILL."""
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", BCRYPT_ROUNDS="4")
    server.wait_for("Starting worker", count=2)
    server.signal_group(signal.SIGINT)

    assert server.wait_gone(seconds=15) == 0, server.output
    assert not TROUBLE.search(server.output), server.output


def test_ctrl_c_while_the_workers_import_leaves_no_process_within_15_seconds(sqlite_template, servers, tmp_path):
    """A worker killed during its imports never acknowledges: Sanic alone would wait 30 s for it, then SIGKILL
    the group; `EarlyStop` tells it at once. The workers' tracebacks and Sanic's error are allowed here."""
    server = start(servers, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), WORKERS="2", BCRYPT_ROUNDS="4")
    server.wait_for_children(3)  # Sanic's state manager and both workers, which take about a second to import
    server.signal_group(signal.SIGINT)

    server.wait_gone(seconds=15)


def test_two_workers_start_on_a_fresh_sqlite_file_every_time(sqlite_template, servers, tmp_path):
    for attempt in range(4):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        server = start(
            servers, directory, DATABASE_URL=sqlite_template.fresh_url(directory), WORKERS="2", BCRYPT_ROUNDS="4"
        )
        server.wait_for("Worker ready", count=2)
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
        server.signal_main(signal.SIGTERM)
        assert server.wait_gone(seconds=30) == 0, server.output
        assert not TROUBLE.search(server.output), server.output
