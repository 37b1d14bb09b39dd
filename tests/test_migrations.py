"""Alembic: upgrade, downgrade and upgrade again on an empty database; the models match the migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from referral.clock import utcnow
from referral.db.tables import metadata
from tests.databases import downgrade, migrate
from tests.support import ThrowawayPostgres

TABLES = {"user", "referral_code", "referral", "referral_count", "alembic_version"}


@pytest.fixture
def empty_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", None
        return
    request.getfixturevalue("postgres_server")  # skips or fails when PostgreSQL is unreachable
    with ThrowawayPostgres("referral_migrate") as database:
        yield database.url, "custom_schema"


def inspect(url: str, schema: str | None, action):
    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: action(sync, schema))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def table_names(connection: sa.Connection, schema: str | None) -> set[str]:
    return set(sa.inspect(connection).get_table_names(schema=schema))


def model_differences(connection: sa.Connection, schema: str | None) -> list:
    if schema:
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


def test_upgrade_downgrade_upgrade(empty_database):
    url, schema = empty_database
    migrate(url, schema)
    assert inspect(url, schema, table_names) == TABLES
    downgrade(url, schema)
    assert inspect(url, schema, table_names) == {"alembic_version"}
    migrate(url, schema)
    assert inspect(url, schema, table_names) == TABLES


def test_models_match_the_migrations(empty_database):
    url, schema = empty_database
    migrate(url, schema)
    assert inspect(url, schema, model_differences) == []


@pytest.mark.postgres_only
def test_everything_lives_in_db_schema(empty_database):
    url, schema = empty_database
    migrate(url, schema)
    assert inspect(url, schema, table_names) == TABLES
    assert inspect(url, "public", table_names) == set()


def insert_two_live_codes(connection: sa.Connection, schema: str | None) -> None:
    if schema:
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
    connection.execute(
        sa.text("INSERT INTO \"user\" (email, password_hash, created_at) VALUES ('a@example.com', 'x', :now)"),
        {"now": utcnow()},
    )
    insert = sa.text("INSERT INTO referral_code (user_id, code, expires_at, created_at) VALUES (1, :code, :now, :now)")
    connection.execute(insert, {"code": "FIRST", "now": utcnow()})
    connection.execute(insert, {"code": "SECOND", "now": utcnow()})


def test_one_live_code_per_user_is_enforced_by_the_database(empty_database):
    url, schema = empty_database
    migrate(url, schema)
    with pytest.raises(sa.exc.IntegrityError):
        inspect(url, schema, insert_two_live_codes)


def seed_referrals_before_counts(connection: sa.Connection, schema: str | None) -> None:
    if schema:
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
    now = {"now": utcnow()}
    connection.execute(
        sa.text("INSERT INTO \"user\" (email, password_hash, created_at) VALUES ('a@example.com', 'x', :now)"), now
    )
    connection.execute(
        sa.text("INSERT INTO referral_code (user_id, code, expires_at, created_at) VALUES (1, 'CODE', :now, :now)"),
        now,
    )
    for number in range(3):
        connection.execute(
            sa.text("INSERT INTO referral (email, code_id, referrer_id, created_at) VALUES (:email, 1, 1, :now)"),
            {"email": f"r{number}@example.com", **now},
        )
    connection.commit()


def referral_totals(connection: sa.Connection, schema: str | None) -> list[tuple[int, int]]:
    if schema:
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
    return [tuple(row) for row in connection.execute(sa.text("SELECT referrer_id, total FROM referral_count"))]


def test_referral_totals_are_backfilled_from_existing_referrals(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0001")
    inspect(url, schema, seed_referrals_before_counts)
    migrate(url, schema)
    assert inspect(url, schema, referral_totals) == [(1, 3)]
