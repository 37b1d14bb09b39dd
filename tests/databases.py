"""Clean databases for tests: SQLite always, PostgreSQL when one is reachable.

SQLite: migrate a template file once per session, copy it for each test (milliseconds).
PostgreSQL: a throwaway database on TEST_POSTGRES_URL's server (tests.support), migrated once into
its own schema (so DB_SCHEMA is exercised), every table truncated before each test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from referral.db.migrations import SCRIPT_LOCATION
from referral.db.tables import metadata
from tests.support import ROOT, ThrowawayPostgres

POSTGRES_SCHEMA = "referral_test"
HEAD = ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head()
PREVIOUS = ScriptDirectory(str(SCRIPT_LOCATION)).get_revision(HEAD).down_revision  # the revision before the code's


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


class PostgresDatabase(ThrowawayPostgres):
    """The session's PostgreSQL database, dropped at the end of the session."""

    def __init__(self) -> None:
        super().__init__("referral_test")
        self.schema = POSTGRES_SCHEMA
        migrate(self.url, self.schema)

    def truncate(self) -> None:
        tables = ", ".join(f'"{self.schema}"."{table.name}"' for table in metadata.sorted_tables)
        self.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
