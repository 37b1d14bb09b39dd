"""Alembic environment: migrates the database the service's settings point at.

The URL comes from `config.attributes["database_url"]` when a caller (the tests) sets it, otherwise
from the settings (environment, then .env): DATABASE_URL or the DB_* set, and DB_SCHEMA with either.
On PostgreSQL every table and Alembic's version table live in DB_SCHEMA, created if missing. A bad
setting stops it with one line naming the variable and exit status 2.
"""

from __future__ import annotations

import asyncio
import sys

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from referral.config import ConfigError, load_settings
from referral.db.tables import metadata

config = context.config


def _target() -> tuple[str, str | None]:
    url = config.attributes.get("database_url")
    schema = config.attributes.get("db_schema")
    if url is None:
        try:
            settings = load_settings()
        except ConfigError as error:  # one line naming the variable, exit status 2, like the service
            print(f"alembic: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        url, schema = settings.database_url, settings.db_schema
    return url, schema


def _migrate(connection: Connection, schema: str | None) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if schema and not is_sqlite:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=is_sqlite,
        version_table_schema=schema if schema and not is_sqlite else None,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, schema: str | None) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, schema)
    finally:
        await engine.dispose()


def run_migrations_offline(url: str) -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


url, schema = _target()
if context.is_offline_mode():
    run_migrations_offline(url)
else:
    asyncio.run(_run_online(url, schema))
