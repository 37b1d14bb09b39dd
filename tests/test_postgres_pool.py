"""The PostgreSQL pool: releasing a connection costs no round trip and leaves no transaction behind."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from referral.config import Settings
from referral.db.database import create_database

pytestmark = pytest.mark.postgres_only


def with_pool(settings: Settings, scenario: Any) -> Any:
    async def run() -> Any:
        db = create_database(settings)
        await db.connect()
        try:
            pool = db._backend._pool  # databases keeps asyncpg's pool there (as `pool_usage` reads it)
            assert isinstance(pool, asyncpg.Pool)
            return await scenario(pool)
        finally:
            await db.disconnect()

    return asyncio.run(run())


def test_releasing_a_connection_sends_nothing_to_the_server(settings, backend):
    async def scenario(pool: asyncpg.Pool) -> list[str]:
        sent: list[str] = []
        connection = await pool.acquire()
        connection.add_query_logger(lambda query: sent.append(query.query))
        await connection.fetchval("SELECT 1")
        await pool.release(connection)
        return sent

    assert with_pool(settings, scenario) == ["SELECT 1"]


def test_a_transaction_left_open_is_rolled_back_on_release(settings, backend):
    async def scenario(pool: asyncpg.Pool) -> tuple[bool, str | None]:
        connection = await pool.acquire()
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMPORARY TABLE left_behind (n int)")
        await pool.release(connection)
        async with pool.acquire() as again:
            return again.is_in_transaction(), await again.fetchval("SELECT to_regclass('pg_temp.left_behind')::text")

    assert with_pool(settings, scenario) == (False, None)
