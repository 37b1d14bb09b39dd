"""The database ceilings: bare Sanic + the driver, answering the service's database reads and writes.

`python -m bench.dbceiling` with HOST, PORT, BENCH_DB_URL (the service's form of the URL) and
BENCH_DB_POOL (the service's DB_POOL_SIZE) in the environment. One worker, access log off, no
validation, no cache, no rate limits, no `databases`: each route runs the very SQL the service runs,
straight on the driver, so the service's row divided by this one is what our stack costs on top of
the database round trips.

- `GET /refer/getcode?email=`: getcode's lookup on a cache miss, the SQL of
  `referral.db.codes.ACTIVE_CODE_BY_EMAIL` compiled for the dialect, with asyncpg's `pool.fetchrow`
  (an asyncpg pool of the service's size, min_size 0 like the service's) or on SQLite a pool of
  aiosqlite connections configured like the service's (`referral.db.sqlite.CONNECTION_PRAGMAS`).
- `GET /referals/list?user_id=&limit=&offset=`: the 100-row page, the SQL of
  `referral.db.referrals.REFERRAL_PAGE` (the referrer's total in the same round trip), as the
  service's JSON with X-Total-Count. No token: the service's check of the token (a JWT decode and one
  `SELECT token_version`) is part of what is measured against this.
- PostgreSQL only, `POST /referals/register {"email", "code"}`: the statements the service's
  registration runs, in one transaction (the code and its owner `FOR SHARE`, the referral's INSERT
  ... ON CONFLICT DO NOTHING, the referrer's total upserted).
- PostgreSQL only, `POST /refer/update_code`, `authorization: <user id>`: the statements of extending
  an active code (`SELECT token_version` for the token, then in one transaction the user's row
  `FOR NO KEY UPDATE`, the live code, the UPDATE of its expiry).

Each statement is built from the service's SQLAlchemy Core tables and compiled once, as the service's
own are; answers are serialised with orjson, as the service's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert

from bench.ceiling import serve
from referral.db.codes import ACTIVE_CODE_BY_EMAIL, CODE_COLUMNS
from referral.db.referrals import REFERRAL_PAGE
from referral.db.tables import referral, referral_code, referral_count, user

PG_DIALECT = postgresql_asyncpg.dialect()


@dataclass(frozen=True)
class Statement:
    """SQL compiled once for asyncpg ($1, $2, ...), with the names of its parameters in order."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: sa.Executable) -> Statement:
        compiled = statement.compile(dialect=PG_DIALECT)
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def args(self, **values: Any) -> list[Any]:
        return [values[name] if name in values else self.defaults[name] for name in self.names]


def write_statements() -> dict[str, Statement]:
    """The service's statements for /referals/register and /refer/update_code (see referral.db.*)."""
    code_for_use = (
        sa.select(*CODE_COLUMNS, referral_code.c.retired_at, user.c.email.label("owner_email"))
        .select_from(referral_code.join(user, referral_code.c.user_id == user.c.id))
        .where(referral_code.c.code == sa.bindparam("code"))
        .with_for_update(key_share=True, of=referral_code)
    )
    c = referral_code.c
    use_code = (
        referral_code.update()
        .where(c.id == sa.bindparam("code_id"), sa.or_(c.max_uses.is_(None), c.uses < c.max_uses))
        .values(uses=c.uses + 1)
        .returning(c.id)
    )
    insert_referral = (
        pg_insert(referral)
        .values(
            email=sa.bindparam("email"),
            mailbox=sa.bindparam("mailbox"),
            code_id=sa.bindparam("code_id"),
            referrer_id=sa.bindparam("referrer_id"),
            user_id=sa.bindparam("user_id"),
            created_at=sa.bindparam("now"),
        )
        .on_conflict_do_nothing()
        .returning(referral.c.id)
    )
    count_one_more = (
        pg_insert(referral_count)
        .values(referrer_id=sa.bindparam("referrer_id"), total=1)
        .on_conflict_do_update(index_elements=["referrer_id"], set_={"total": referral_count.c.total + 1})
    )
    token_version = user.select().with_only_columns(user.c.token_version).where(user.c.id == sa.bindparam("user_id"))
    lock_user = user.select().where(user.c.id == sa.bindparam("user_id")).with_for_update(key_share=True)
    live_code = sa.select(*CODE_COLUMNS).where(
        referral_code.c.user_id == sa.bindparam("user_id"), referral_code.c.retired_at.is_(None)
    )
    set_expiry = (
        referral_code.update()
        .where(referral_code.c.id == sa.bindparam("code_id"))
        .values(expires_at=sa.bindparam("expires_at"), max_uses=sa.bindparam("max_uses"))
    )
    return {
        name: Statement.of(statement)
        for name, statement in {
            "code_for_use": code_for_use,
            "use_code": use_code,
            "insert_referral": insert_referral,
            "count_one_more": count_one_more,
            "token_version": token_version,
            "lock_user": lock_user,
            "live_code": live_code,
            "set_expiry": set_expiry,
        }.items()
    }


def iso(value: datetime | str) -> str:
    """An expiry as the service writes it (`2027-11-26T23:00:00+00:00`); SQLite gives a naive string."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def answer(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def code_json(user_id: int, code: str, expires_at: datetime | str) -> dict[str, Any]:
    return {"user_id": user_id, "code": code, "exp_date": iso(expires_at)}


class SQLitePool:
    """`size` aiosqlite connections, configured like the service's pooled backend, handed out in turn."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self._idle: asyncio.LifoQueue[Any] = asyncio.LifoQueue()

    async def open(self) -> None:
        import aiosqlite

        from referral.db.sqlite import CONNECTION_PRAGMAS

        for _ in range(self.size):
            connection = aiosqlite.connect(self.path, isolation_level=None)
            await connection.__aenter__()
            for pragma in CONNECTION_PRAGMAS:
                await connection.execute(pragma)
            self._idle.put_nowait(connection)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        connection = await self._idle.get()
        try:
            yield connection
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()


def create_app(*_: object) -> Sanic:
    url = os.environ["BENCH_DB_URL"]
    pool_size = int(os.environ.get("BENCH_DB_POOL", "10"))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    getcode_plan = ACTIVE_CODE_BY_EMAIL._compile(dialect)  # the service's own compiled SQL
    page_plan = REFERRAL_PAGE._compile(dialect)
    getcode_sql, page_sql = getcode_plan.sql, page_plan.sql
    now_bind = dict(getcode_plan.binds)["now"]
    getcode_names = [name for name, _ in getcode_plan.binds]  # in the order the SQL takes them
    page_names = [name for name, _ in page_plan.binds]
    app = Sanic("bench_db_ceiling")
    app.config.AUTO_EXTEND = False
    state: dict[str, Any] = {}

    def getcode_args(email: str) -> list[Any]:
        now = datetime.now(UTC)
        values = {"email": email, "now": now if now_bind is None else now_bind(now)}
        return [values[name] for name in getcode_names]

    def page_args(referrer_id: int, limit: int, offset: int) -> list[Any]:
        values = {"referrer_id": referrer_id, "limit": limit, "offset": offset}
        return [values[name] for name in page_names]

    if dialect == "postgresql":
        import asyncpg

        statements = write_statements()

        @app.before_server_start
        async def connect(app: Sanic) -> None:
            dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
            state["pool"] = await asyncpg.create_pool(dsn, min_size=0, max_size=pool_size, command_timeout=30)

        async def fetch_code(email: str) -> Any:
            return await state["pool"].fetchrow(getcode_sql, *getcode_args(email))

        async def fetch_page(referrer_id: int, limit: int, offset: int) -> list[Any]:
            return await state["pool"].fetch(page_sql, *page_args(referrer_id, limit, offset))

        @app.post("/referals/register")
        async def register(request: Request) -> HTTPResponse:
            body = orjson.loads(request.body)
            email = body["email"].strip().lower()
            now = datetime.now(UTC)
            async with state["pool"].acquire() as connection, connection.transaction():
                s = statements["code_for_use"]
                used = await connection.fetchrow(s.sql, *s.args(code=body["code"]))
                if used is None or used["retired_at"] is not None or used["expires_at"] <= now:
                    return answer({"title": "code not usable"}, status=404)
                s = statements["use_code"]
                if await connection.fetchval(s.sql, *s.args(code_id=used["id"])) is None:
                    return answer({"title": "code used up"}, status=410)
                s = statements["insert_referral"]
                args = s.args(
                    email=email,
                    mailbox=email,
                    code_id=used["id"],
                    referrer_id=used["user_id"],
                    user_id=None,
                    now=now,
                )
                referral_id = await connection.fetchval(s.sql, *args)
                if referral_id is None:
                    return answer({"title": "already a referral"}, status=409)
                s = statements["count_one_more"]
                await connection.execute(s.sql, *s.args(referrer_id=used["user_id"]))
            ref_key = code_json(used["user_id"], used["code"], used["expires_at"])
            return answer(
                {"id": referral_id, "email": email, "exp_date": ref_key["exp_date"], "ref_key": ref_key}, status=201
            )

        @app.post("/refer/update_code")
        async def update_code(request: Request) -> HTTPResponse:
            user_id = int(request.headers["authorization"])
            days = orjson.loads(request.body)["day"]
            s = statements["token_version"]
            if await state["pool"].fetchval(s.sql, *s.args(user_id=user_id)) is None:
                return answer({"title": "unknown user"}, status=401)
            now = datetime.now(UTC)
            expires_at = (now + timedelta(days=days)).replace(microsecond=0)
            async with state["pool"].acquire() as connection, connection.transaction():
                s = statements["lock_user"]
                await connection.fetchrow(s.sql, *s.args(user_id=user_id))
                s = statements["live_code"]
                live = await connection.fetchrow(s.sql, *s.args(user_id=user_id))
                if live is None or live["expires_at"] <= now:
                    return answer({"title": "no active code"}, status=404)
                s = statements["set_expiry"]
                args = s.args(code_id=live["id"], expires_at=expires_at, max_uses=live["max_uses"])
                await connection.execute(s.sql, *args)
            return answer({**code_json(user_id, live["code"], expires_at), "max_uses": live["max_uses"]})

    else:
        sqlite_pool = SQLitePool(url.split(":///", 1)[1], pool_size)

        @app.before_server_start
        async def connect(app: Sanic) -> None:
            await sqlite_pool.open()

        async def fetch_code(email: str) -> Any:
            async with sqlite_pool.connection() as connection:
                rows = await connection.execute_fetchall(getcode_sql, getcode_args(email))
            return rows[0] if rows else None

        async def fetch_page(referrer_id: int, limit: int, offset: int) -> list[Any]:
            async with sqlite_pool.connection() as connection:
                return list(await connection.execute_fetchall(page_sql, page_args(referrer_id, limit, offset)))

    @app.after_server_stop
    async def disconnect(app: Sanic) -> None:
        if "pool" in state:
            await state["pool"].close()
        if dialect == "sqlite":
            await sqlite_pool.close()

    @app.get("/refer/getcode")
    async def getcode(request: Request) -> HTTPResponse:
        row = await fetch_code(request.args.get("email", ""))
        if row is None:
            return answer({"title": "no active code"}, status=404)
        _id, user_id, code, expires_at, max_uses = row
        return answer({**code_json(user_id, code, expires_at), "max_uses": max_uses})

    @app.get("/referals/list")
    async def referals_list(request: Request) -> HTTPResponse:
        args = request.args
        referrer_id = int(args.get("user_id", "0"))
        limit, offset = int(args.get("limit", "100")), int(args.get("offset", "0"))
        rows = await fetch_page(referrer_id, limit, offset)
        total = rows[0][7] if rows else 0
        items = [
            {
                "id": row[0],
                "email": row[1],
                "code": row[3],
                "ref_key": code_json(row[2], row[3], row[4]),
                "status": row[5],
                "qualified_at": iso(row[6]) if row[6] else None,
            }
            for row in rows
        ]
        return answer(items, headers={"X-Total-Count": str(total)})

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return answer({"status": "ok"})

    return app


def main() -> None:
    serve(create_app)


if __name__ == "__main__":
    main()
