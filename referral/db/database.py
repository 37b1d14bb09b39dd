"""Opening the database, the few helpers every query module shares, and driver errors in the service's terms.

Only this package imports the drivers: their failures leave it as `DatabaseUnavailable` (the database
cannot answer now: it cannot be reached, or SQLite's file is locked or cannot be opened) or
`DataConflict` (a constraint refused the write). Any other driver error (a missing table, bad SQL) is a
bug and leaves as it is: a 500, logged with its traceback, never a 503 "try again".
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, NoReturn

import asyncpg
import sqlalchemy as sa
from databases import Database
from databases.core import Connection, Transaction
from databases.interfaces import Record
from sqlalchemy.dialects import postgresql, sqlite

from referral.config import Settings
from referral.db.migrations import CONNECT_TIMEOUT, RevisionCheck, Revisions
from referral.db.sqlite import SQLiteConnectionPool
from referral.db.tables import REVISION
from referral.errors import DatabaseUnavailable, DataConflict

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.TransactionRollbackError,  # deadlock or serialization failure: safe to retry
)
"""Failures that mean "the database cannot answer now", not "the request is wrong"."""

ALEMBIC_REVISION = sa.select(sa.column("version_num")).select_from(sa.table("alembic_version"))
"""Alembic's version table; on PostgreSQL found through the connection's search_path (DB_SCHEMA)."""

SQLITE_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL}
)
"""SQLite's OperationalError is also "no such table" or bad SQL: only these primary result codes are
"cannot answer now" (locked, unable to open, disk I/O error, disk full)."""

INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)
DRIVER_ERRORS = (*UNAVAILABLE_ERRORS, sqlite3.OperationalError, asyncpg.InterfaceError, *INTEGRITY_ERRORS)
"""Everything `raise_translated` looks at; what it does not translate leaves unchanged."""


def is_unavailable(error: BaseException) -> bool:
    """True when `error` means the database cannot answer now (waiting may fix it), not a bug."""
    if isinstance(error, sqlite3.OperationalError):
        return getattr(error, "sqlite_errorcode", 0) & 0xFF in SQLITE_UNAVAILABLE_CODES
    if isinstance(error, asyncpg.InterfaceError):  # mostly misuse of the API; a closed connection or pool is not
        return "is closed" in str(error) or "is closing" in str(error)
    return isinstance(error, UNAVAILABLE_ERRORS)


def is_missing_table(error: BaseException) -> bool:
    return isinstance(error, asyncpg.UndefinedTableError) or (
        isinstance(error, sqlite3.OperationalError) and str(error).startswith("no such table")
    )


def raise_translated(error: BaseException) -> NoReturn:
    """Re-raise a driver error as the service's own exception, chained to the original; a bug as it is."""
    if isinstance(error, INTEGRITY_ERRORS):
        raise DataConflict() from error
    if is_unavailable(error):
        raise DatabaseUnavailable() from error
    raise error


class ReleasingTransaction(Transaction):
    """`databases`' Transaction, except that a failed BEGIN, COMMIT or ROLLBACK gives the connection back.

    Upstream, the connection is entered before BEGIN and left only after a successful COMMIT or
    ROLLBACK: a request cancelled meanwhile (its client went away) or a BEGIN that times out on a
    locked database keeps its pool slot forever, and once every slot is gone every request waits.
    `make bench` found it: after a write-heavy row, the next rows got no answer at all.
    """

    async def start(self) -> Transaction:
        self._transaction = self._connection._connection.transaction()
        async with self._connection._transaction_lock:
            is_root = not self._connection._transaction_stack
            try:
                await self._connection.__aenter__()
            except DRIVER_ERRORS as error:
                raise_translated(error)
            try:
                await self._transaction.start(is_root=is_root, extra_options=self._extra_options)
            except BaseException as error:
                self._transaction = None
                await self._connection.__aexit__()
                if isinstance(error, DRIVER_ERRORS):
                    raise_translated(error)
                raise
            self._connection._transaction_stack.append(self)
        return self

    async def commit(self) -> None:
        await self._finish(commit=True)

    async def rollback(self) -> None:
        await self._finish(commit=False)

    async def _finish(self, *, commit: bool) -> None:
        async with self._connection._transaction_lock:
            assert self._connection._transaction_stack[-1] is self
            self._connection._transaction_stack.pop()
            transaction = self._transaction
            assert transaction is not None
            try:
                await (transaction.commit() if commit else transaction.rollback())
            except DRIVER_ERRORS as error:
                raise_translated(error)
            finally:
                self._transaction = None
                await self._connection.__aexit__()  # on SQLite, releasing rolls back what is left open


class CheckedConnection(Connection):
    """Checks the database's revision before the first use of any connection (see `RevisionCheck`)."""

    _database: ReferralDatabase

    async def __aenter__(self) -> Connection:
        check = self._database.revision_check
        if check is not None and not check.ok:
            await check.ensure()
        return await super().__aenter__()


class ReferralDatabase(Database):
    """`databases.Database` with the pooled SQLite backend (see `referral.db.sqlite`), and what the outbox
    needs to record events in the data layer's transactions (`referral.outbox.record`): the webhook
    destinations (none: no events are recorded) and the nudge called after recording one."""

    SUPPORTED_BACKENDS: ClassVar[dict[str, str]] = {
        **Database.SUPPORTED_BACKENDS,
        "sqlite": "referral.db.sqlite:PooledSQLiteBackend",
    }

    def __init__(
        self, url: str, *, check_revision: bool = False, webhook_endpoints: tuple[str, ...] = (), **options: Any
    ) -> None:
        self.revision_check = RevisionCheck(self.read_revision) if check_revision else None
        self.webhook_endpoints = webhook_endpoints
        self.on_event_recorded: Callable[[], None] | None = None
        super().__init__(url, **options)

    async def read_revision(self) -> str | None:
        """Alembic's revision of the database (None before any migration), read on a connection of the
        pool itself: the revision check runs before any query is let through. DatabaseUnavailable when
        the database cannot answer, or not within twice CONNECT_TIMEOUT."""
        connection = self._backend.connection()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT * 2):
                await connection.acquire()
                try:
                    return await connection.fetch_val(ALEMBIC_REVISION)
                finally:
                    await connection.release()
        except TimeoutError as error:
            raise DatabaseUnavailable() from error
        except (*DRIVER_ERRORS, asyncpg.UndefinedTableError) as error:
            if is_missing_table(error):
                return None
            raise_translated(error)

    def connection(self) -> Connection:
        """`databases`' connection of this task; with a `revision_check`, entering it checks the revision
        until the database is at the code's head (MigrationsPending or DatabaseUnavailable until then)."""
        if self._global_connection is not None:
            return self._global_connection
        if not self._connection:
            self._connection = CheckedConnection(self, self._backend)
        return self._connection

    def transaction(self, *, force_rollback: bool = False, **kwargs: Any) -> Transaction:
        return ReleasingTransaction(self.connection, force_rollback=force_rollback, **kwargs)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """One connection for the queries inside (no transaction)."""
        try:
            async with self.connection():
                yield
        except DRIVER_ERRORS as error:
            raise_translated(error)

    async def fetch_one(self, query: Any, values: dict[str, Any] | None = None) -> Record | None:
        try:
            return await super().fetch_one(query, values)
        except DRIVER_ERRORS as error:
            raise_translated(error)

    async def fetch_all(self, query: Any, values: dict[str, Any] | None = None) -> list[Record]:
        try:
            return await super().fetch_all(query, values)
        except DRIVER_ERRORS as error:
            raise_translated(error)

    async def fetch_val(self, query: Any, values: dict[str, Any] | None = None, column: Any = 0) -> Any:
        try:
            return await super().fetch_val(query, values, column)
        except DRIVER_ERRORS as error:
            raise_translated(error)

    async def execute(self, query: Any, values: dict[str, Any] | None = None) -> Any:
        try:
            return await super().execute(query, values)
        except DRIVER_ERRORS as error:
            raise_translated(error)

    async def ping(self) -> None:
        """DatabaseUnavailable unless the database answers a trivial query."""
        await self.fetch_val(sa.select(sa.true()))

    @property
    def is_sqlite(self) -> bool:
        return self.url.dialect == "sqlite"

    def pool_usage(self) -> tuple[int, int] | None:
        """(connections in use, the pool's maximum) in this process, for the metrics; None without a pool
        (not connected yet)."""
        pool = getattr(self._backend, "_pool", None)  # databases' backends keep their pool there
        if isinstance(pool, asyncpg.Pool):
            return pool.get_size() - pool.get_idle_size(), pool.get_max_size()
        if isinstance(pool, SQLiteConnectionPool):
            return pool.in_use, pool.size
        return None


async def _keep_session(connection: asyncpg.Connection) -> None:
    """asyncpg's pool `reset`: nothing to undo, so no round trip on every release.

    The default runs `RESET ALL`, `UNLISTEN *`, `CLOSE ALL` and an advisory unlock each time a
    connection goes back to the pool (a round trip per database request: bench/RESULTS.md). The
    service changes no session state (DB_SCHEMA is a server setting given at connect, which RESET ALL
    would keep anyway; no LISTEN, cursor or advisory lock), and asyncpg still rolls back a transaction
    left open before calling this.
    """


def create_database(settings: Settings) -> ReferralDatabase:
    """A not yet connected Database for `settings`; connect it in a server listener."""
    options: dict[str, Any]
    if settings.is_sqlite:
        options = {"pool_size": settings.db_pool_size}
    else:
        # min_size=0: start even while PostgreSQL is down; connections are made on demand.
        options = {"min_size": 0, "max_size": settings.db_pool_size, "command_timeout": 30, "reset": _keep_session}
        if settings.db_schema:
            options["server_settings"] = {"search_path": settings.db_schema}
    return ReferralDatabase(
        settings.database_url, check_revision=True, webhook_endpoints=settings.webhook_endpoints, **options
    )


async def revisions_at_start(settings: Settings) -> Revisions:
    """The database's and the code's revisions, read on a pool of its own, closed at once.

    DatabaseUnavailable when the database cannot be reached; any other failure (a database that does
    not exist, a refused password) is raised as the driver's error: waiting will not fix it.
    """
    db = create_database(settings)
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT * 2):  # on SQLite, connecting switches the file to WAL
                await db.connect()
        except TimeoutError as error:
            raise DatabaseUnavailable() from error
        except DRIVER_ERRORS as error:
            raise_translated(error)
        return Revisions(await db.read_revision(), REVISION)
    finally:
        if db.is_connected:
            await db.disconnect()


def dialect_insert(db: ReferralDatabase) -> Any:
    """The INSERT construct of the database's dialect: it knows `ON CONFLICT`."""
    return sqlite.insert if db.is_sqlite else postgresql.insert


def insert_ignoring_conflict(db: ReferralDatabase, table: sa.Table, *, unique: str | None = None) -> Any:
    """`INSERT ... ON CONFLICT [(unique)] DO NOTHING`: a duplicate gives no row instead of an error.

    Without `unique`, a duplicate of any unique column.
    """
    return dialect_insert(db)(table).on_conflict_do_nothing(index_elements=[unique] if unique else None)
