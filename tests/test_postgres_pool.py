"""The PostgreSQL pool: releasing a connection costs no round trip and leaves no transaction behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from referral.config import Settings
from referral.db.database import create_database

pytestmark = pytest.mark.postgres_only


@asynccontextmanager
async def pool_of(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The asyncpg pool of the service's database, connected, disconnected at the end."""
    db = create_database(settings)
    await db.connect()
    try:
        pool = db._backend._pool  # databases keeps asyncpg's pool there (as `pool_usage` reads it)
        assert isinstance(pool, asyncpg.Pool)
        yield pool
    finally:
        await db.disconnect()


async def test_releasing_a_connection_sends_nothing_to_the_server(settings, backend):
    sent: list[str] = []
    async with pool_of(settings) as pool:
        connection = await pool.acquire()
        connection.add_query_logger(lambda query: sent.append(query.query))
        await connection.fetchval("SELECT 1")
        await pool.release(connection)
    assert sent == ["SELECT 1"]


async def test_a_transaction_left_open_is_rolled_back_on_release(settings, backend):
    async with pool_of(settings) as pool:
        connection = await pool.acquire()
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMPORARY TABLE left_behind (n int)")
        await pool.release(connection)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT to_regclass('pg_temp.left_behind')::text") is None
