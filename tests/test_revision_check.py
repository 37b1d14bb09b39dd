"""The migration check at run time, and which driver errors mean "the database cannot answer now".

A database that is not at the code's migration (here: one behind it) answers 503 with a problem saying
migrations are pending, logged as an error, until it is migrated: then the service serves again by
itself. On PostgreSQL that database is also down when the service starts, so the revision is checked on
the first connection. A missing table at run time is a 500 logged as a bug, never a 503 "try again".
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import sqlalchemy as sa

from referral.db import migrations
from referral.db.database import is_unavailable, raise_translated
from referral.errors import DatabaseUnavailable
from tests.conftest import settings_on
from tests.databases import HEAD, PREVIOUS, migrate
from tests.live import serve
from tests.problems import assert_problem
from tests.support import ROOT, TEST_SECRET, TcpProxy

PENDING = f"the database is at revision {PREVIOUS}, the code needs {HEAD}: run `make migrate` (alembic upgrade head)"
CREDENTIALS = {"email": "after@example.com", "password": "a-fine-passphrase"}


@pytest.fixture(autouse=True)
def recheck_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "RECHECK_AFTER", 0)


def assert_migrations_pending(answer) -> None:
    body = assert_problem(answer, 503)
    assert body["type"] == "urn:referral:problem:migrations-pending", body
    assert "migrations are pending" in body["detail"], body
    assert answer.headers["retry-after"] == "30"


def test_a_database_behind_the_code_answers_503_until_it_is_migrated(behind, caplog):
    url, schema = behind
    with serve(settings_on(url, schema)) as api:
        assert_migrations_pending(api.get("/health"))
        assert_migrations_pending(api.post("/user/register", json=CREDENTIALS))
        errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
        assert any(PENDING in message for message in errors), errors

        migrate(url, schema)
        assert api.get("/health").status_code == 200
        assert api.post("/user/register", json=CREDENTIALS).status_code == 201


@pytest.mark.postgres_only
def test_down_at_start_then_back_behind_the_code_then_migrated(behind, caplog):
    url, schema = behind
    parts = urlsplit(url)
    with TcpProxy(parts.port or 5432, parts.hostname or "127.0.0.1") as proxy:
        proxy.cut()  # not listening yet: the database is down
        proxied = url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        with serve(settings_on(proxied, schema)) as api:
            down = assert_problem(api.get("/health"), 503)
            assert down["type"] == "urn:referral:problem:unavailable", down

            proxy.restore()
            assert_migrations_pending(api.get("/health"))
            migrate(url, schema)
            assert api.get("/health").status_code == 200
            assert api.post("/user/register", json=CREDENTIALS).status_code == 201


def test_a_missing_table_is_a_500_logged_as_a_bug(api, database, caplog):
    _, schema = database
    table = f'"{schema}".referral_code' if schema else "referral_code"
    db = api.app.ctx.db
    api.run(db.execute(sa.text(f"ALTER TABLE {table} RENAME TO referral_code_gone")))
    try:
        answer = api.get("/refer/getcode", params={"email": "nobody@example.com"})
    finally:
        gone = f'"{schema}".referral_code_gone' if schema else "referral_code_gone"
        api.run(db.execute(sa.text(f"ALTER TABLE {gone} RENAME TO referral_code")))
    body = assert_problem(answer, 500)
    assert body["detail"] == "An unexpected error occurred."
    logged = [record for record in caplog.records if record.levelno >= logging.ERROR and record.exc_info]
    assert logged, caplog.text
    assert "referral_code" in caplog.text


def sqlite_error(tmp_path: Path, action) -> sqlite3.OperationalError:
    with pytest.raises(sqlite3.OperationalError) as raised:
        action(tmp_path)
    return raised.value


def locked(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sqlite3.connect(path, timeout=0).execute("SELECT count(*) FROM sqlite_master")
    finally:
        holder.close()


def missing_table(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").execute("SELECT * FROM referral_code")


def cannot_open(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "no" / "such" / "directory.db")


def test_sqlite_locked_or_unable_to_open_is_unavailable_a_missing_table_is_not(tmp_path):
    assert is_unavailable(sqlite_error(tmp_path, locked))
    assert is_unavailable(sqlite_error(tmp_path, cannot_open))
    error = sqlite_error(tmp_path, missing_table)
    assert not is_unavailable(error)
    with pytest.raises(sqlite3.OperationalError) as raised:
        raise_translated(error)
    assert raised.value is error  # not translated: the error handler logs it as the bug it is
    with pytest.raises(DatabaseUnavailable):
        raise_translated(sqlite_error(tmp_path, locked))


def test_asyncpg_closed_connections_are_unavailable_misuse_is_not():
    assert is_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert is_unavailable(asyncpg.InterfaceError("pool is closing"))
    assert is_unavailable(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))
    assert not is_unavailable(asyncpg.InterfaceError("cannot perform operation: another operation is in progress"))
    assert not is_unavailable(asyncpg.UndefinedTableError('relation "referral_code" does not exist'))


WORKER_CHECK = """
import asyncio, sys
from referral.config import load_settings
from referral.db.database import create_database

settings = load_settings(env={{}}, env_file=None, secret_key={secret!r}, database_url={url!r}, db_schema={schema!r})
db = create_database(settings)


async def check() -> None:
    await db.connect()
    try:
        await db.revision_check.ensure()
        assert db.revision_check.ok
    finally:
        await db.disconnect()


asyncio.run(check())
print(sorted(name for name in ("alembic", "sqlalchemy.ext.asyncio", "sqlalchemy.orm") if name in sys.modules))
"""


def test_a_worker_checks_the_revision_without_loading_alembic(database):
    """Alembic and SQLAlchemy's asyncio engine (with its ORM) cost a worker about 15 MiB: only the
    process that starts the service loads them."""
    url, schema = database
    code = WORKER_CHECK.format(secret=TEST_SECRET, url=url, schema=schema)
    done = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
