"""Bulk seeding: users with one code each, and referrals for chosen referrers, straight into the tables.

Rows are written in bulk (executemany on SQLite, COPY on PostgreSQL) with ids chosen here, so user N
has the email `userN@example.com`, the code `bench%07d` (id N) and, when it is a referrer, referrals
`refN-J@example.com`. Every user shares one bcrypt hash (cost 12) of BENCH_PASSWORD, computed once
with the service's own pre-hash scheme: hashing a million passwords would take a day of CPU.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from tqdm import tqdm

from referral.db.tables import referral, referral_code, referral_count, user
from referral.security import _hash_sync
from tests.support import ROOT, asyncpg_url

BENCH_PASSWORD = "bench-password-1"  # noqa: S105 (a throwaway password of throwaway users)
CHUNK = 20_000


def email_of(user_id: int) -> str:
    return f"user{user_id}@example.com"


def code_of(user_id: int) -> str:
    return f"bench{user_id:07d}"


@dataclass(frozen=True)
class SeedPlan:
    users: int
    referrals: dict[int, int] = field(default_factory=dict)  # referrer id -> how many referrals
    max_uses: dict[int, int] = field(default_factory=dict)  # user id -> the use limit of their code

    @property
    def rows(self) -> int:
        return 2 * self.users + sum(self.referrals.values()) + len(self.referrals)


@dataclass(frozen=True)
class SeedRows:
    """The rows of a plan as tuples in the tables' column order (SQLite's insert takes them so), generated
    lazily."""

    plan: SeedPlan
    password_hash: str
    now: datetime

    def users(self) -> Iterator[tuple[Any, ...]]:
        for n in range(1, self.plan.users + 1):
            yield (n, email_of(n), self.password_hash, self.now)

    def codes(self) -> Iterator[tuple[Any, ...]]:
        expires_at = self.now + timedelta(days=365)
        for n in range(1, self.plan.users + 1):
            uses = self.plan.referrals.get(n, 0)  # each referrer's referrals use their one code
            yield (n, n, code_of(n), expires_at, self.now, None, self.plan.max_uses.get(n), uses)

    def referrals(self) -> Iterator[tuple[Any, ...]]:
        next_id = 1
        for referrer, count in self.plan.referrals.items():
            for j in range(count):
                yield (next_id, f"ref{referrer}-{j}@example.com", referrer, referrer, None, self.now)
                next_id += 1

    def referral_counts(self) -> Iterator[tuple[Any, ...]]:
        yield from self.plan.referrals.items()


USER_COLUMNS = ("id", "email", "password_hash", "created_at")
CODE_COLUMNS = ("id", "user_id", "code", "expires_at", "created_at", "retired_at", "max_uses", "uses")
REFERRAL_COLUMNS = ("id", "email", "code_id", "referrer_id", "user_id", "created_at")
TABLES_WITH_IDS = (
    (user, USER_COLUMNS, "users"),
    (referral_code, CODE_COLUMNS, "codes"),
    (referral, REFERRAL_COLUMNS, "referrals"),
)
TABLES = (*TABLES_WITH_IDS, (referral_count, ("referrer_id", "total"), "referral_counts"))


def shared_password_hash(rounds: int = 12) -> str:
    return _hash_sync(BENCH_PASSWORD, rounds)


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("DB_SCHEMA", None)
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    while chunk := list(islice(rows, CHUNK)):
        yield chunk


def _sqlite_datetime(value: datetime) -> str:
    """`value` as the service's UTCDateTime column stores it on SQLite (SQLAlchemy's own format)."""
    dialect = sqlite.dialect()
    column_type = user.c.created_at.type
    naive = column_type.process_bind_param(value, dialect)
    return dialect.type_descriptor(sa.DateTime()).bind_processor(dialect)(naive)


def seed_sqlite(path: Path, plan: SeedPlan, password_hash: str, *, label: str) -> None:
    rows = SeedRows(plan, password_hash, datetime.now(UTC))
    stamp = {rows.now: _sqlite_datetime(rows.now)}
    expires = rows.now + timedelta(days=365)
    stamp[expires] = _sqlite_datetime(expires)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -262144")  # 256 MiB while seeding
        connection.execute("BEGIN")
        with tqdm(total=plan.rows, unit="rows", unit_scale=True, desc=f"seed {label}", mininterval=0.5) as bar:
            for table, columns, kind in TABLES:
                statement = str(table.insert().compile(dialect=sqlite.dialect(), column_keys=list(columns)))
                for chunk in _chunks(getattr(rows, kind)()):
                    connection.executemany(statement, [tuple(stamp.get(v, v) for v in row) for row in chunk])
                    bar.update(len(chunk))
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()


async def _seed_pg(database_url: str, plan: SeedPlan, password_hash: str, label: str) -> None:
    rows = SeedRows(plan, password_hash, datetime.now(UTC))
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        with tqdm(total=plan.rows, unit="rows", unit_scale=True, desc=f"seed {label}", mininterval=0.5) as bar:
            for table, columns, kind in TABLES:
                for chunk in _chunks(getattr(rows, kind)()):
                    await connection.copy_records_to_table(table.name, records=chunk, columns=list(columns))
                    bar.update(len(chunk))
        for table, _, _ in TABLES_WITH_IDS:
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "  # noqa: S608 (our table names)
                f'(SELECT coalesce(max(id), 0) + 1 FROM "{table.name}"), false)'
            )
        await connection.execute("VACUUM ANALYZE")  # the bench starts after autovacuum would have run
    finally:
        await connection.close()


def seed_pg(database_url: str, plan: SeedPlan, password_hash: str, *, label: str) -> None:
    asyncio.run(_seed_pg(database_url, plan, password_hash, label))
