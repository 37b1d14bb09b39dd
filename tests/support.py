"""Helpers shared by the tests and the benchmark: servers on free ports, throwaway PostgreSQL databases,
a TCP proxy a test can cut, and the REQUIRE_<X>=1 rule (a missing prerequisite fails under it, and is
skipped otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"
TEST_INTEGRATION_KEY = "test-integration-key-long-enough-for-the-rule"
INTEGRATION = {"X-API-Key": TEST_INTEGRATION_KEY}
POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")  # the bench uses db 14


def require(what: str, problem: str | None) -> None:
    """Nothing when `problem` is None; else a failure under REQUIRE_<WHAT>=1 (CI), a skip otherwise."""
    if problem is None:
        return
    variable = f"REQUIRE_{what.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {problem}")
    pytest.skip(problem)


def redoc_problem() -> str | None:
    """None when ReDoc is where the service reads it from; `make venv` puts it there only when npm is found."""
    configured = os.environ.get("SANIC_DOCS_REDOC_JS")
    path = Path(configured) if configured else Path(sys.prefix) / "share" / "redoc" / "redoc.standalone.js"
    if path.is_file():
        return None
    return f"ReDoc is not installed at {path} (`make venv` with npm installs it)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a server a test starts: this PATH, the checkout on PYTHONPATH, the tests' SECRET_KEY,
    a free PORT and cheap hashes, then `overrides` (None drops a variable); nothing else of the test's own
    environment (and, started in a test's tmp_path, no .env)."""
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "SECRET_KEY": TEST_SECRET, "BCRYPT_ROUNDS": "4"}
    env = {**base, "PORT": str(free_port()), **overrides}
    return {name: value for name, value in env.items() if value is not None}


def start_server(
    command: list[str], *, cwd: Path, env: dict[str, str], output: IO[Any] | int = subprocess.DEVNULL
) -> subprocess.Popen:
    """`command` (a server, usually `python -m referral`) in a session of its own, so that `stop_server` can
    take its workers down with it; stderr goes where stdout goes (`output`: a file, or nowhere)."""
    return subprocess.Popen(  # noqa: S603 (our own interpreter and commands)
        command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_until_healthy(
    base_url: str, process: subprocess.Popen, *, seconds: float = 30, log: Path | None = None
) -> None:
    """Poll `/health` of a server started as `process` until it answers 200; RuntimeError otherwise."""

    def failure(what: str) -> RuntimeError:
        return RuntimeError(what + (f":\n{log.read_text()}" if log is not None else ""))

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failure(f"the server exited early with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise failure(f"the server did not answer within {seconds:g} s")


@contextlib.contextmanager
def running_server(
    env: dict[str, str], *, cwd: Path, log: Path | None = None, stop_seconds: float = 15
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m referral` started with `env` in `cwd` (output to `log`, or nowhere) and healthy: its base URL
    and process; stopped on leaving."""
    with log.open("wb") if log else contextlib.nullcontext(subprocess.DEVNULL) as output:
        process = start_server([sys.executable, "-m", "referral"], cwd=cwd, env=env, output=output)
    try:
        base_url = f"http://127.0.0.1:{env['PORT']}"
        wait_until_healthy(base_url, process, log=log)
        yield base_url, process
    finally:
        stop_server(process, seconds=stop_seconds)


def stop_server(process: subprocess.Popen, *, seconds: float = 15) -> None:
    """SIGINT (Sanic's graceful stop); after `seconds`, SIGKILL to the server and, if it leads one, its group."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        if os.getpgid(process.pid) == process.pid:  # started with start_new_session: its workers go too
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def asyncpg_url(url: str) -> str:
    """A PostgreSQL URL as asyncpg takes it (no `+asyncpg` driver)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL as the service takes it (`postgresql+asyncpg://`)."""
    return asyncpg_url(url).replace("postgresql://", "postgresql+asyncpg://", 1)


def run_sql(url: str, statement: str, *, timeout: float = 60) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(asyncpg_url(url), timeout=timeout)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_reachable(server_url: str = POSTGRES_SERVER_URL) -> str | None:
    """None when the server answers, otherwise why not."""
    try:
        run_sql(server_url, "SELECT 1", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"PostgreSQL at {server_url} is unreachable: {error!r}"
    return None


class ThrowawayPostgres:
    """A database of its own on a PostgreSQL server, created at once and dropped by `drop()` or leaving `with`.

    `url` is the service's form of its URL, `asyncpg_url` asyncpg's. A `name` is used as given (a database
    of that name left by an earlier run is dropped first); otherwise it is `prefix` and a random suffix.
    """

    def __init__(
        self, prefix: str = "referral_test", *, server_url: str = POSTGRES_SERVER_URL, name: str | None = None
    ) -> None:
        self.server_url = server_url
        self.name = name or f"{prefix}_{secrets.token_hex(4)}"
        address = f"{server_url.rsplit('/', 1)[0]}/{self.name}"
        self.asyncpg_url = asyncpg_url(address)
        self.url = sqlalchemy_url(address)
        self.drop()
        run_sql(server_url, f'CREATE DATABASE "{self.name}"')

    def execute(self, statement: str) -> None:
        run_sql(self.asyncpg_url, statement)

    def drop(self) -> None:
        run_sql(self.server_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def __enter__(self) -> ThrowawayPostgres:
        return self

    def __exit__(self, *_: object) -> None:
        self.drop()


class TcpProxy:
    """A TCP forwarder from a free loopback port to `target_host:target_port`, for outages on demand.

    `cut()` closes every connection and refuses new ones (as a server that went away); `stall()` closes
    every connection and then accepts new ones but never answers (as a server that hangs); `restore()`
    forwards again. Threads, so that it works whatever event loop the test or the server runs.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._stalled = False
        self.restore()

    def restore(self) -> None:
        with self._lock:
            was_stalled, self._stalled = self._stalled, False
        if was_stalled:
            self._close_connections()  # the held ones
        self._listen()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # shutdown() first: on Linux it stops the listening at once and wakes accept()
        self._close_connections()

    def stall(self) -> None:
        with self._lock:
            self._stalled = True
        self._close_connections()
        self._listen()

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener was closed
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    return
                self._connections.add(client)
                stalled = self._stalled
            if stalled:
                continue  # held open, never read: the client waits for its own timeout
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._forget(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections.add(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        self._forget(source)
        self._forget(sink)

    def _forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
        _close(connection)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` and its key, made with the openssl command: (certificate, key)."""
    certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
    subject = ["-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"]
    files = ["-keyout", str(key), "-out", str(certificate)]
    openssl = shutil.which("openssl")
    assert openssl is not None
    subprocess.run(  # noqa: S603 (fixed arguments)
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", *subject, *files],
        check=True,
        capture_output=True,
    )
    return certificate, key
