"""A `databases` SQLite backend that keeps its connections open.

The stock backend opens a new aiosqlite connection (and thread) on every acquire and starts
transactions with a deferred `BEGIN`, so two concurrent writers can fail with "database is locked".
This one keeps a bounded pool of open connections, configures each once (foreign keys, WAL, busy
timeout) and starts transactions with `BEGIN IMMEDIATE`, so writers queue for the lock instead of
failing. Within a process, write transactions also take turns on an asyncio lock before `BEGIN
IMMEDIATE`: waiting in SQLite's busy handler means sleeping in growing steps (up to 100 ms a
retry), which gave concurrent writes a p99 over a second (bench/RESULTS.md). Other processes
(workers) still meet through the busy timeout. Waiting never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

import aiosqlite
from databases.backends.sqlite import SQLiteBackend, SQLiteConnection, SQLiteTransaction
from databases.core import DatabaseURL

BUSY_TIMEOUT_MS = 5_000
WAL_RETRY_SECONDS = 0.02
CONNECTION_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
)


class SQLiteConnectionPool:
    """At most `size` open connections, handed out and taken back in turn."""

    def __init__(self, url: DatabaseURL, *, size: int = 8, **options: Any) -> None:
        if url.database in ("", ":memory:"):
            raise ValueError("SQLite needs a file: an in-memory database is not shared between connections")
        self._database = url.database
        self._options = options
        self._idle: asyncio.LifoQueue[aiosqlite.Connection] = asyncio.LifoQueue()
        self.size = size
        self.in_use = 0  # connections handed out now (for the metrics)
        self._slots = asyncio.Semaphore(size)
        self._write_turn = asyncio.Lock()
        self._writer: aiosqlite.Connection | None = None

    async def acquire(self) -> aiosqlite.Connection:
        await self._slots.acquire()
        self.in_use += 1
        try:
            if not self._idle.empty():
                return self._idle.get_nowait()
            return await self._open()
        except BaseException:
            self._free_slot()
            raise

    async def release(self, connection: aiosqlite.Connection) -> None:
        try:
            if connection.in_transaction:
                await connection.rollback()
            self._idle.put_nowait(connection)
        except Exception:
            await self._discard(connection)
        finally:
            self.end_write(connection)  # a transaction left open (cancelled) gives its turn back too
            self._free_slot()

    async def discard(self, connection: aiosqlite.Connection) -> None:
        """Close a connection instead of handing it out again; its slot is free for a new one."""
        try:
            await self._discard(connection)
        finally:
            self.end_write(connection)
            self._free_slot()

    def _free_slot(self) -> None:
        self.in_use -= 1
        self._slots.release()

    async def begin_write(self, connection: aiosqlite.Connection) -> None:
        """Wait for this process's turn to write, then take SQLite's write lock (`BEGIN IMMEDIATE`)."""
        await self._write_turn.acquire()
        self._writer = connection
        try:
            async with connection.execute("BEGIN IMMEDIATE") as cursor:
                await cursor.close()
        except BaseException:
            self.end_write(connection)
            raise

    def end_write(self, connection: aiosqlite.Connection) -> None:
        if self._writer is connection:
            self._writer = None
            self._write_turn.release()

    async def use_wal(self) -> None:
        """Switch the file to WAL once, before any pooled use: readers then never block the writer.

        The mode is stored in the file; switching takes an exclusive lock, so it is not done by every
        new connection, nor when the file is in WAL already (another worker switched it). The switch's
        statement is closed at once: left open, it kept that lock until the garbage collector came by,
        and a second worker starting on a fresh file waited out the busy timeout and failed with
        "database is locked". Two switches at the same moment may still meet: SQLite then answers one
        "database is locked" at once (waiting could deadlock), and that one looks again.
        """
        connection = await self.acquire()
        try:
            deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
            while await _pragma(connection, "PRAGMA journal_mode") != "wal":
                try:
                    await _pragma(connection, "PRAGMA journal_mode = WAL")
                except sqlite3.OperationalError as error:
                    locked = error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                    if not locked or asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(WAL_RETRY_SECONDS)
        finally:
            await self.release(connection)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._discard(self._idle.get_nowait())

    async def _open(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(self._database, isolation_level=None, **self._options)
        # aiosqlite's thread is not a daemon: a connection left open (a worker stopped before its pool
        # closed) kept the process from exiting, so a stop hung for ever. The pool still closes them.
        connection._thread.daemon = True
        await connection.__aenter__()
        try:
            for pragma in CONNECTION_PRAGMAS:
                await connection.execute(pragma)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _discard(self, connection: aiosqlite.Connection) -> None:
        with contextlib.suppress(Exception):  # already broken: nothing left to release
            await connection.close()


async def _pragma(connection: aiosqlite.Connection, pragma: str) -> str:
    """The first value a PRAGMA answers, lower-cased; its statement closed (see `use_wal`)."""
    async with connection.execute(pragma) as cursor:
        row = await cursor.fetchone()
    return str(row[0]).lower() if row else ""


class ImmediateTransaction(SQLiteTransaction):
    """Takes the write lock at BEGIN, so a transaction never fails half-way on lock upgrade."""

    _connection: PooledSQLiteConnection

    async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
        if not is_root:
            await super().start(is_root, extra_options)
            return
        self._is_root = True
        assert self._connection._connection is not None, "Connection is not acquired"
        await self._connection._pool.begin_write(self._connection._connection)

    async def commit(self) -> None:
        try:
            await super().commit()
        finally:
            self._end_write()

    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self._end_write()

    def _end_write(self) -> None:
        if self._is_root and self._connection._connection is not None:
            self._connection._pool.end_write(self._connection._connection)


class PooledSQLiteConnection(SQLiteConnection):
    """A pooled connection that is closed, not reused, when one of its statements was cancelled.

    A statement interrupted mid-way (the client went away) may keep its cursor, and with it a read
    snapshot, open on the connection; a later write on it would then fail at once with "database is
    locked" (the snapshot cannot be upgraded), whatever the busy timeout.
    """

    _pool: SQLiteConnectionPool
    _interrupted = False

    def transaction(self) -> ImmediateTransaction:
        return ImmediateTransaction(self)

    async def release(self) -> None:
        assert self._connection is not None, "Connection is not acquired"
        connection, self._connection = self._connection, None
        if self._interrupted:
            self._interrupted = False
            await self._pool.discard(connection)
        else:
            await self._pool.release(connection)

    async def fetch_all(self, query: Any) -> Any:
        try:
            return await super().fetch_all(query)
        except asyncio.CancelledError:
            self._interrupted = True
            raise

    async def fetch_one(self, query: Any) -> Any:
        try:
            return await super().fetch_one(query)
        except asyncio.CancelledError:
            self._interrupted = True
            raise

    async def execute(self, query: Any) -> Any:
        try:
            return await super().execute(query)
        except asyncio.CancelledError:
            self._interrupted = True
            raise


class PooledSQLiteBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        pool_size = options.pop("pool_size", 8)
        super().__init__(database_url, **options)
        self._pool = SQLiteConnectionPool(self._database_url, size=pool_size, **options)

    async def connect(self) -> None:
        await self._pool.use_wal()

    async def disconnect(self) -> None:
        await self._pool.close()

    def connection(self) -> PooledSQLiteConnection:
        return PooledSQLiteConnection(self._pool, self._dialect)
