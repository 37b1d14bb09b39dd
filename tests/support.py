"""Helpers shared by the tests and the benchmark: servers on free ports, throwaway PostgreSQL databases,
and the REQUIRE_<X>=1 rule (a missing prerequisite fails under it, and is skipped otherwise).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


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
