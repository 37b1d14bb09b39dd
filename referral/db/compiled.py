"""Hot reads compiled once: a SQLAlchemy Core statement turned into SQL once per dialect, then reused.

`databases` compiles a statement on every call and wraps each row in its generic Record, which is
most of a lookup's time next to the driver's own (bench/RESULTS.md). For the few reads on the hot
path, `CompiledQuery` keeps the compiled SQL (named bind parameters in a fixed order), the bind and
result processors of its columns' types, and runs it on the very connection `databases` hands out
(`Connection.raw_connection`). The statement is still written with the Core tables; rows come out
as plain dicts keyed by column name, holding the same values `databases` would give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite as sqlite_aiosqlite
from sqlalchemy.engine import Dialect

from referral.db.database import DRIVER_ERRORS, ReferralDatabase, raise_translated

Processor = Callable[[Any], Any] | None
DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql_asyncpg.dialect(),  # $1, $2, ...: asyncpg prepares and caches each SQL text
    "sqlite": sqlite_aiosqlite.dialect(paramstyle="qmark"),
}


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    binds: tuple[tuple[str, Processor], ...]  # in the order the SQL takes them
    columns: tuple[tuple[str, Processor], ...]


class CompiledQuery:
    """A read whose parameters are `sa.bindparam`s, run with `await query.fetch_one(db, name=value)`."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    async def fetch_one(self, db: ReferralDatabase, **params: Any) -> dict[str, Any] | None:
        rows = await self._run(db, params, one=True)
        return rows[0] if rows else None

    async def fetch_all(self, db: ReferralDatabase, **params: Any) -> list[dict[str, Any]]:
        return await self._run(db, params, one=False)

    async def _run(self, db: ReferralDatabase, params: Mapping[str, Any], *, one: bool) -> list[dict[str, Any]]:
        plan = self._plans.get(db.url.dialect) or self._compile(db.url.dialect)
        args = [params[name] if process is None else process(params[name]) for name, process in plan.binds]
        try:
            async with db.connection() as connection:
                raw = connection.raw_connection
                if db.is_sqlite:
                    rows = await raw.execute_fetchall(plan.sql, args)
                elif one:
                    row = await raw.fetchrow(plan.sql, *args)
                    rows = [] if row is None else [row]
                else:
                    rows = await raw.fetch(plan.sql, *args)
        except DRIVER_ERRORS as error:
            raise_translated(error)
        columns = plan.columns
        return [
            {
                name: value if process is None else process(value)
                for (name, process), value in zip(columns, row, strict=True)
            }
            for row in rows
        ]

    def _compile(self, dialect_name: str) -> _Plan:
        dialect = DIALECTS[dialect_name]
        compiled = self.statement.compile(dialect=dialect)
        names = compiled.positiontup or ()
        binds = tuple((name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names)
        columns = tuple(
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in self.statement.selected_columns
        )
        plan = _Plan(compiled.string, binds, columns)
        self._plans[dialect_name] = plan
        return plan
