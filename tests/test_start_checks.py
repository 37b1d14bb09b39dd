"""Starting for real: a database not at the code's migration and a bad setting stop `python -m referral`,
Sanic's CLI and Alembic with one line on stderr and exit status 2, never a traceback; a database that
cannot be reached does not stop the start; DATABASE_URL with DB_SCHEMA migrates and serves that schema.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.databases import HEAD, PREVIOUS
from tests.support import ROOT, ThrowawayPostgres, free_port, running_server, server_env, start_server, stop_server

BIN = Path(sys.executable).parent
PYTHON_M_REFERRAL = [sys.executable, "-m", "referral"]
SANIC_CLI = [str(BIN / "sanic"), "referral.app:create_app", "--factory"]
ALEMBIC_UPGRADE = [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini"), "upgrade", "head"]
MIGRATE = "run `make migrate` (alembic upgrade head)"


def refused(command: list[str], directory: Path, **env: str | None) -> str:
    """Run `command` expecting it to refuse to start: exit status 2 and one line on stderr; that line."""
    done = subprocess.run(  # noqa: S603
        command, cwd=directory, env=server_env(**env), capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    lines = done.stderr.splitlines()
    assert len(lines) == 1, output
    return lines[0]


def test_a_database_behind_the_code_stops_the_start_naming_the_command(behind, tmp_path):
    url, schema = behind
    line = refused(PYTHON_M_REFERRAL, tmp_path, DATABASE_URL=url, DB_SCHEMA=schema)
    assert line == f"referral: the database is at revision {PREVIOUS}, the code needs {HEAD}: {MIGRATE}"


@pytest.mark.sqlite_only
def test_sanic_cli_refuses_a_database_behind_the_code_too(behind, tmp_path):
    line = refused([*SANIC_CLI, "--port", str(free_port())], tmp_path, DATABASE_URL=behind[0])
    assert line == f"referral: the database is at revision {PREVIOUS}, the code needs {HEAD}: {MIGRATE}"


def test_an_empty_database_stops_the_start(tmp_path):
    line = refused(PYTHON_M_REFERRAL, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    assert line == f"referral: the database has no tables yet (no Alembic revision), the code needs {HEAD}: {MIGRATE}"


def test_a_database_ahead_of_the_code_stops_the_start(sqlite_template, tmp_path):
    url = sqlite_template.fresh_url(tmp_path)
    with sqlite3.connect(url.split("///", 1)[1]) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    line = refused(PYTHON_M_REFERRAL, tmp_path, DATABASE_URL=url)
    assert line.startswith(f"referral: the database is at revision 9999, newer than this code ({HEAD}) knows")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "abc", "PORT must be an integer from 0 to 65535, got 'abc'"),
        (
            "RATE_LIMIT_IP",
            "lots",
            "RATE_LIMIT_IP is not a rate limit in the limits notation (e.g. 120/minute), got 'lots'",
        ),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 32 bytes"),
    ],
)
def test_a_bad_setting_stops_python_dash_m_referral_in_one_line(sqlite_template, tmp_path, variable, value, message):
    line = refused(PYTHON_M_REFERRAL, tmp_path, DATABASE_URL=sqlite_template.fresh_url(tmp_path), **{variable: value})
    assert line.startswith(f"referral: {message}"), line


def test_a_bad_setting_stops_the_sanic_cli_and_alembic_in_one_line(sqlite_template, tmp_path):
    url = sqlite_template.fresh_url(tmp_path)
    line = refused([*SANIC_CLI, "--port", str(free_port())], tmp_path, DATABASE_URL=url, RATE_LIMIT_IP="lots")
    assert line.startswith("referral: RATE_LIMIT_IP is not a rate limit"), line
    line = refused(ALEMBIC_UPGRADE, tmp_path, DATABASE_URL=url, PORT="abc")
    assert line == "alembic: PORT must be an integer from 0 to 65535, got 'abc'"


def test_a_database_that_cannot_be_reached_does_not_stop_the_start(postgres_server, tmp_path):
    env = server_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_here")
    port = env["PORT"]
    process = start_server(PYTHON_M_REFERRAL, cwd=tmp_path, env=env)
    try:
        deadline, status = time.monotonic() + 30, None
        while status is None and time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 503, f"status {status}, exit status {process.returncode}"
    finally:
        stop_server(process, seconds=10)


def test_database_url_with_db_schema_migrates_and_serves_that_schema(postgres_server, tmp_path):
    with ThrowawayPostgres("referral_url_schema") as database:
        url = database.url.replace("postgresql+asyncpg://", "postgresql://")  # as the README writes it
        done = subprocess.run(  # noqa: S603
            ALEMBIC_UPGRADE,
            cwd=tmp_path,
            env=server_env(DATABASE_URL=url, DB_SCHEMA="tenant"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert fetch_value(database.asyncpg_url, "SELECT version_num FROM tenant.alembic_version") == HEAD
        assert fetch_value(database.asyncpg_url, "SELECT to_regclass('public.alembic_version')") is None

        env = server_env(DATABASE_URL=url, DB_SCHEMA="tenant")
        with running_server(env, cwd=tmp_path, stop_seconds=10) as (base_url, _):
            credentials = {"email": "schema@example.com", "password": "a-fine-passphrase"}
            assert httpx.post(f"{base_url}/user/register", json=credentials, timeout=30).status_code == 201
        assert fetch_value(database.asyncpg_url, 'SELECT count(*) FROM tenant."user"') == 1


def fetch_value(url: str, query: str) -> object:
    async def fetch() -> object:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return asyncio.run(fetch())
