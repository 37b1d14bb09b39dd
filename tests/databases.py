"""Clean databases for tests: SQLite always, PostgreSQL when one is reachable.

SQLite: migrate a template file once per session, copy it for each test (milliseconds).
PostgreSQL: create a throwaway database, migrate it once into its own schema (so DB_SCHEMA is
exercised), and truncate every table before each test.
Set TEST_POSTGRES_URL to point elsewhere; REQUIRE_POSTGRES=1 turns "unreachable" into a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from referral.db.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_SCHEMA = "referral_test"


def alembic_config(database_url: str, schema: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["db_schema"] = schema
    return config


def migrate(database_url: str, schema: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url, schema), revision)


def downgrade(database_url: str, schema: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url, schema), revision)


class SQLiteTemplate:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrate(f"sqlite+aiosqlite:///{self.path}")

    def fresh_url(self, directory: Path) -> str:
        target = directory / "test.db"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"


def postgres_reachable() -> str | None:
    """None when the server answers, otherwise why not."""

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_SERVER_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"PostgreSQL at {POSTGRES_SERVER_URL} is unreachable: {error!r}"
    return None


class PostgresDatabase:
    """A throwaway database on the test server, dropped at the end of the session."""

    def __init__(self) -> None:
        self.name = f"referral_test_{secrets.token_hex(4)}"
        self.schema = POSTGRES_SCHEMA
        server = POSTGRES_SERVER_URL.rsplit("/", 1)[0]
        self.asyncpg_url = f"{server}/{self.name}"
        self.url = self.asyncpg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        migrate(self.url, self.schema)

    def truncate(self) -> None:
        tables = ", ".join(f'"{self.schema}"."{table.name}"' for table in metadata.sorted_tables)

        async def run() -> None:
            connection = await asyncpg.connect(self.asyncpg_url)
            try:
                await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            finally:
                await connection.close()

        asyncio.run(run())

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    @staticmethod
    async def _admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_SERVER_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
