"""The data layer's workarounds for `databases`, each checked against the reason it exists.

- The pooled SQLite backend keeps its connections: the stock one opens one (and a thread) per query.
- `ReleasingTransaction` gives a connection back when BEGIN is cancelled: upstream kept its pool
  slot forever, and once every slot was gone every request waited.
- Writers of one process take turns before `BEGIN IMMEDIATE`, so they never wait in SQLite's busy
  handler (which sleeps in growing steps): with a busy timeout of zero, concurrent writers all succeed.
- Switching the file to WAL leaves no lock behind: a second worker on a fresh file starts at once.
- The pool's connection threads are daemons, where aiosqlite's are not: none keeps a stopping worker alive.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from referral.db import sqlite as pooled
from referral.db.database import ReferralDatabase

metadata = sa.MetaData()
counter = sa.Table("counter", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("note", sa.String(10)))
ONE_ROW = counter.insert().values(note="row")


@asynccontextmanager
async def database_at(path: Path, *, pool_size: int = 2) -> AsyncIterator[ReferralDatabase]:
    """A pooled database on a new file at `path` holding the `counter` table, disconnected at the end."""
    db = ReferralDatabase(f"sqlite+aiosqlite:///{path}", pool_size=pool_size)
    await db.connect()
    try:
        await db.execute(sa.schema.CreateTable(counter))
        yield db
    finally:
        await db.disconnect()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases of every aiosqlite connection the pool opens from now on."""
    paths: list[str] = []
    connect = pooled.aiosqlite.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        paths.append(args[0])
        return connect(*args, **kwargs)

    monkeypatch.setattr(pooled.aiosqlite, "connect", counting_connect)
    return paths


async def test_queries_reuse_the_pooled_connections(tmp_path: Path, opened: list[str]) -> None:
    async with database_at(tmp_path / "reuse.db") as db:
        for _ in range(50):
            await db.fetch_val(sa.select(sa.func.count()).select_from(counter))
    assert 1 <= len(opened) <= 2  # one for WAL and the queries; never one per query


async def test_a_cancelled_begin_gives_its_connection_back(tmp_path: Path) -> None:
    async with database_at(tmp_path / "cancel.db") as db:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_write_lock() -> None:
            async with db.transaction():
                await db.execute(ONE_ROW)
                holding.set()
                await release.wait()

        async def write() -> None:
            async with db.transaction():
                await db.execute(ONE_ROW)

        holder = asyncio.create_task(hold_the_write_lock())
        await holding.wait()
        waiting = asyncio.create_task(write())  # takes the second slot, then waits for the write turn
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await holder
        # Both slots must be free again: one held by a transaction, one for a read beside it.
        async with db.transaction():
            await db.execute(ONE_ROW)
            total = await asyncio.wait_for(_read_beside(db), timeout=5)
        assert total == 1


async def _read_beside(db: ReferralDatabase) -> int:
    """A read on another task, so on another connection than the caller's transaction."""
    return await asyncio.create_task(db.fetch_val(sa.select(sa.func.count()).select_from(counter)))


async def test_writers_take_turns_instead_of_waiting_in_the_busy_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_busy_wait = tuple(
        "PRAGMA busy_timeout = 0" if pragma.startswith("PRAGMA busy_timeout") else pragma
        for pragma in pooled.CONNECTION_PRAGMAS
    )
    monkeypatch.setattr(pooled, "CONNECTION_PRAGMAS", no_busy_wait)

    async def write(db: ReferralDatabase) -> None:
        async with db.transaction():
            await db.execute(ONE_ROW)
            await asyncio.sleep(0.005)

    async with database_at(tmp_path / "turns.db", pool_size=8) as db:
        await asyncio.gather(*(write(db) for _ in range(20)))
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(counter)) == 20


async def test_switching_to_wal_leaves_no_lock_behind(tmp_path: Path) -> None:
    """A second worker starting on a fresh file opens its connections at once, even with no busy timeout.

    The switch's statement used to stay open (its cursor never closed), keeping the lock it took until the
    garbage collector came by: the other worker waited out its busy timeout, then failed to start.
    """
    path = tmp_path / "fresh.db"
    sqlite3.connect(path).execute("CREATE TABLE t (id INTEGER)")  # a file in rollback-journal mode

    db = ReferralDatabase(f"sqlite+aiosqlite:///{path}", pool_size=2)
    gc.disable()  # as when the collector has not come by yet
    try:
        await db.connect()
        other = sqlite3.connect(path, timeout=0)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            other.execute("SELECT count(*) FROM t").fetchone()
        finally:
            other.close()
    finally:
        gc.enable()
        await db.disconnect()


async def test_a_connection_whose_statement_was_cancelled_is_not_reused(tmp_path: Path, opened: list[str]) -> None:
    """Its cursor may still hold a read snapshot: a later write on it would fail at once."""
    slow = sa.text(  # a statement that runs long enough to be cancelled half-way
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000000) SELECT count(*) FROM n"
    )

    async with database_at(tmp_path / "interrupted.db", pool_size=1) as db:
        before = len(opened)
        reading = asyncio.create_task(db.fetch_one(slow))
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        for _ in range(4):  # every connection of the pool writes
            async with db.transaction():
                await db.execute(ONE_ROW)
        assert len(opened) == before + 1  # the interrupted one was closed and replaced once
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(counter)) == 4


async def test_the_pools_threads_are_daemons_where_aiosqlites_own_are_not(tmp_path: Path, monkeypatch) -> None:
    """aiosqlite's worker thread is not a daemon (omnilib/aiosqlite#299): a connection left open keeps a
    stopping worker alive for ever. The pool's are; once aiosqlite's own are too, `_open` need not say so."""
    threads: list[threading.Thread] = []
    start = threading.Thread.start

    def noting_start(thread: threading.Thread) -> None:
        threads.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", noting_start)
    await (await aiosqlite.connect(tmp_path / "plain.db")).close()
    async with database_at(tmp_path / "pooled.db", pool_size=1):
        pass
    plain_thread, *pooled_threads = threads
    assert not plain_thread.daemon, "aiosqlite's threads are daemons now: drop the workaround in referral/db/sqlite.py"
    assert pooled_threads
    assert all(thread.daemon for thread in pooled_threads)
