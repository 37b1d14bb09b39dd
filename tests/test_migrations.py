"""Alembic: upgrade, downgrade and upgrade again on an empty database; the models match the migrations."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from referral.clock import utcnow
from referral.db.migrations import SCRIPT_LOCATION
from referral.db.tables import REVISION, metadata
from tests.databases import downgrade, migrate

TABLES = {
    "user",
    "referral_code",
    "referral",
    "referral_count",
    "outbox_event",
    "outbox_delivery",
    "password_reset",
    "alembic_version",
}


def inspect(url: str, schema: str | None, action):
    """`action(connection, schema)` on a connection whose search_path is `schema` (on PostgreSQL)."""

    def in_schema(connection: sa.Connection):
        if schema:
            connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        return action(connection, schema)

    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(in_schema)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def table_names(connection: sa.Connection, schema: str | None) -> set[str]:
    return set(sa.inspect(connection).get_table_names(schema=schema))


def model_differences(connection: sa.Connection, schema: str | None) -> list:
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


INSERT_USER = sa.text("INSERT INTO \"user\" (email, password_hash, created_at) VALUES (:email, 'x', :now)")
INSERT_CODE = sa.text("INSERT INTO referral_code (user_id, code, expires_at, created_at) VALUES (1, :code, :now, :now)")
INSERT_REFERRAL = sa.text("INSERT INTO referral (email, code_id, referrer_id, created_at) VALUES (:email, 1, 1, :now)")


def seed(users: list[str], codes: list[str], referrals: list[str]):
    """An action inserting users, codes of user 1 and referrals through code 1, as rows, and committing."""

    def insert(connection: sa.Connection, schema: str | None) -> None:
        for statement, column, values in (
            (INSERT_USER, "email", users),
            (INSERT_CODE, "code", codes),
            (INSERT_REFERRAL, "email", referrals),
        ):
            for value in values:
                connection.execute(statement, {column: value, "now": utcnow()})
        connection.commit()

    return insert


def test_one_live_code_per_user_is_enforced_by_the_database(empty_database):
    url, schema = empty_database
    migrate(url, schema)
    with pytest.raises(sa.exc.IntegrityError):
        inspect(url, schema, seed(["a@example.com"], ["FIRST", "SECOND"], []))


def referral_totals(connection: sa.Connection, schema: str | None) -> list[tuple[int, int]]:
    return [tuple(row) for row in connection.execute(sa.text("SELECT referrer_id, total FROM referral_count"))]


def test_referral_totals_are_backfilled_from_existing_referrals(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0001")
    inspect(url, schema, seed(["a@example.com"], ["CODE"], [f"r{number}@example.com" for number in range(3)]))
    migrate(url, schema)
    assert inspect(url, schema, referral_totals) == [(1, 3)]


REFERRALS_BEFORE_MAILBOXES = ["Bob@example.com", "carol@gmail.com", "bob+x@example.com", "c.a.r.o.l@googlemail.com"]
"""Emails of referrals registered before canonical mailboxes, oldest first: two pairs share a mailbox."""


SEED_BEFORE_MAILBOXES = seed(["a@example.com", "b@example.com"], ["CODE"], REFERRALS_BEFORE_MAILBOXES)


def mailboxes_and_token_versions(connection: sa.Connection, schema: str | None) -> tuple[dict[str, str], list[int]]:
    mailboxes = dict(connection.execute(sa.text("SELECT email, mailbox FROM referral")).all())
    versions = list(connection.execute(sa.text('SELECT token_version FROM "user" ORDER BY id')).scalars())
    return mailboxes, versions


def insert_a_referral_of_a_taken_mailbox(connection: sa.Connection, schema: str | None) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO referral (email, mailbox, code_id, referrer_id, created_at) "
            "VALUES ('bob+y@example.com', 'bob@example.com', 1, 1, :now)"
        ),
        {"now": utcnow()},
    )


def referral_rows(connection: sa.Connection, schema: str | None) -> int:
    return connection.execute(sa.text("SELECT count(*) FROM referral")).scalar_one()


def column_names(connection: sa.Connection, schema: str | None) -> dict[str, set[str]]:
    inspector = sa.inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table, schema=schema)}
        for table in ("user", "referral")
    }


MAILBOXES_AFTER_0003 = {
    "Bob@example.com": "bob@example.com",
    "carol@gmail.com": "carol@gmail.com",
    "bob+x@example.com": None,  # the oldest of its mailbox keeps the value
    "c.a.r.o.l@googlemail.com": None,
}


def test_0003_gives_the_oldest_referral_of_each_mailbox_its_mailbox_and_every_user_token_version_0(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0002")
    inspect(url, schema, SEED_BEFORE_MAILBOXES)
    migrate(url, schema)
    mailboxes, versions = inspect(url, schema, mailboxes_and_token_versions)
    assert mailboxes == MAILBOXES_AFTER_0003
    assert versions == [0, 0]
    with pytest.raises(sa.exc.IntegrityError):
        inspect(url, schema, insert_a_referral_of_a_taken_mailbox)


def test_0003_downgrades_to_0002_keeping_the_rows(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0002")
    inspect(url, schema, SEED_BEFORE_MAILBOXES)
    migrate(url, schema)
    downgrade(url, schema, revision="0002")
    columns = inspect(url, schema, column_names)
    assert "mailbox" not in columns["referral"]
    assert "token_version" not in columns["user"]
    assert inspect(url, schema, referral_rows) == len(REFERRALS_BEFORE_MAILBOXES)
    migrate(url, schema)
    assert inspect(url, schema, mailboxes_and_token_versions)[0] == MAILBOXES_AFTER_0003


def test_the_tables_revision_is_the_head_of_alembic_versions():
    """Each worker compares the database's revision with `tables.REVISION`, not with Alembic's scripts."""
    assert ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head() == REVISION


def program_columns(connection: sa.Connection, schema: str | None) -> tuple[list[tuple], list[tuple], list[tuple]]:
    codes = connection.execute(sa.text("SELECT code, uses, max_uses FROM referral_code ORDER BY id")).all()
    referrals = connection.execute(sa.text("SELECT status, qualified_at, reference FROM referral ORDER BY id")).all()
    counts = connection.execute(sa.text("SELECT referrer_id, total, qualified FROM referral_count")).all()
    return [tuple(row) for row in codes], [tuple(row) for row in referrals], [tuple(row) for row in counts]


def test_0005_counts_each_codes_uses_and_marks_every_referral_registered(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0004")
    inspect(url, schema, seed(["a@example.com"], ["CODE"], ["r1@example.com", "r2@example.com"]))
    migrate(url, schema)
    codes, referrals, counts = inspect(url, schema, program_columns)
    assert codes == [("CODE", 2, None)]
    assert referrals == [("registered", None, None)] * 2
    assert counts == []  # the seed wrote no counter row (0002 back-fills those); the column exists


def delete_the_newest_rows_and_insert_again(connection: sa.Connection, schema: str | None) -> tuple[int, int]:
    """Deletes the newest user and referral, inserts one of each, and answers their ids."""
    connection.execute(sa.text("DELETE FROM referral WHERE id = (SELECT max(id) FROM referral)"))
    connection.execute(sa.text('DELETE FROM "user" WHERE id = (SELECT max(id) FROM "user")'))
    now = {"now": utcnow()}
    user_id = connection.execute(
        sa.text(
            "INSERT INTO \"user\" (email, password_hash, created_at) VALUES ('n@example.com', 'x', :now) RETURNING id"
        ),
        now,
    ).scalar_one()
    referral_id = connection.execute(
        sa.text(
            "INSERT INTO referral (email, code_id, referrer_id, created_at) "
            "VALUES ('n@example.com', 1, 1, :now) RETURNING id"
        ),
        now,
    ).scalar_one()
    connection.commit()
    return user_id, referral_id


def test_0006_keeps_the_rows_and_never_hands_an_id_out_twice(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0005")
    inspect(url, schema, seed(["a@example.com", "b@example.com"], ["CODE"], ["r1@example.com", "r2@example.com"]))
    migrate(url, schema)
    assert inspect(url, schema, referral_rows) == 2
    assert inspect(url, schema, delete_the_newest_rows_and_insert_again) == (3, 3)
    downgrade(url, schema, revision="0005")
    assert inspect(url, schema, referral_rows) == 2


def tombstone_columns(connection: sa.Connection, schema: str | None) -> tuple[list[tuple], list[tuple]]:
    users = connection.execute(sa.text('SELECT id, email, deleted_at FROM "user" ORDER BY id')).all()
    referrals = connection.execute(sa.text("SELECT email, erased_mailbox FROM referral ORDER BY id")).all()
    return [tuple(row) for row in users], [tuple(row) for row in referrals]


def delete_user_2(connection: sa.Connection, schema: str | None) -> None:
    connection.execute(
        sa.text('UPDATE "user" SET email = NULL, password_hash = NULL, deleted_at = :now WHERE id = 2'),
        {"now": utcnow()},
    )
    connection.commit()


def test_0008_keeps_users_and_referrals_and_refuses_to_downgrade_a_deleted_account(empty_database):
    url, schema = empty_database
    migrate(url, schema, revision="0007")
    inspect(url, schema, seed(["a@example.com", "b@example.com"], ["CODE"], ["r1@example.com"]))
    migrate(url, schema)
    users, referrals = inspect(url, schema, tombstone_columns)
    assert users == [(1, "a@example.com", None), (2, "b@example.com", None)]
    assert referrals == [("r1@example.com", None)]
    inspect(url, schema, delete_user_2)
    with pytest.raises(RuntimeError, match="1 deleted accounts"):
        downgrade(url, schema, revision="0007")
