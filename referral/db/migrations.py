"""Is the database at the code's migration? Checked at start and, in each worker, on its first connection.

The code's revision is `referral.db.tables.REVISION` (a test keeps it at `alembic/versions`' head). At
start (`python -m referral`, Sanic's CLI) Alembic itself reads the database's revision
(`read_revisions`) and the start is refused when the two differ. A worker reads it on a connection of
its own pool (`RevisionCheck`, given the database's reader), and so never loads Alembic or SQLAlchemy's
asyncio engine (about 15 MiB a worker: bench/RESULTS.md); a database that cannot be reached at start is
checked that way on its first connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from referral.db.tables import REVISION
from referral.errors import DatabaseUnavailable, MigrationsPending

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger("referral.db")

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent.parent / "alembic"
MIGRATE_COMMAND = "`make migrate` (alembic upgrade head)"
CONNECT_TIMEOUT = 5.0
RECHECK_AFTER = 1.0
"""Seconds a failed check is reused before the database is asked again (a storm of requests asks once)."""


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every revision in `alembic/versions` (only asked to word a mismatch)."""
    from alembic.script import ScriptDirectory

    return frozenset(script.revision for script in ScriptDirectory(str(SCRIPT_LOCATION)).walk_revisions())


@dataclass(frozen=True)
class Revisions:
    database: str | None
    code: str

    @property
    def at_head(self) -> bool:
        return self.database == self.code

    def problem(self) -> str:
        """One line: where the database is, where the code is, and the command that migrates it."""
        if self.database is None:
            return (
                f"the database has no tables yet (no Alembic revision), the code needs {self.code}: "
                f"run {MIGRATE_COMMAND}"
            )
        if self.database not in known_revisions():
            return (
                f"the database is at revision {self.database}, newer than this code ({self.code}) knows: deploy "
                f"the release that migrated it, or run `alembic downgrade {self.code}` with that release"
            )
        return f"the database is at revision {self.database}, the code needs {self.code}: run {MIGRATE_COMMAND}"


class RevisionMismatch(Exception):
    """The database is not at the code's head; the message says which command migrates it."""


async def read_revisions(url: str, schema: str | None, *, seconds: float = CONNECT_TIMEOUT) -> Revisions:
    """The database's and the code's revisions; DatabaseUnavailable when the database cannot be reached.

    Any other failure (a database that does not exist, a refused password) is raised as the driver's
    error: it is not something waiting fixes. Alembic and the engine are imported here, in the process
    that starts the service, not in its workers.
    """
    from alembic.migration import MigrationContext
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from referral.db.database import is_unavailable  # the error table lives with the rest of the data layer

    postgres = not url.startswith("sqlite")
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": seconds} if postgres else {})
    version_schema = schema if postgres else None

    def current(connection: Connection) -> str | None:
        context = MigrationContext.configure(connection, opts={"version_table_schema": version_schema})
        return context.get_current_revision()

    try:
        async with asyncio.timeout(seconds * 2), engine.connect() as connection:
            database = await connection.run_sync(current)
    except DBAPIError as error:
        driver_error = error.orig if error.orig is not None else error
        driver_error = driver_error.__cause__ or driver_error  # asyncpg's error under SQLAlchemy's adapter
        if is_unavailable(driver_error):
            raise DatabaseUnavailable() from driver_error
        raise driver_error from None
    except (OSError, TimeoutError) as error:
        raise DatabaseUnavailable() from error
    finally:
        await engine.dispose()
    return Revisions(database, REVISION)


class RevisionCheck:
    """The revision, checked on the first connection and again until the database is at the code's head.

    Until then every use of the database raises MigrationsPending (503, logged as an error) or, while it
    cannot be reached, DatabaseUnavailable. Once at head it is never asked again: `ok` is all a query pays.
    """

    def __init__(self, read_revision: Callable[[], Awaitable[str | None]]) -> None:
        self.read_revision = read_revision  # the database's Alembic revision; DatabaseUnavailable when unreachable
        self.ok = False
        self._lock = asyncio.Lock()
        self._failure: BaseException | None = None  # the cause of the last failed check
        self._failed_at = 0.0
        self._reported: str | None = None

    async def ensure(self) -> None:
        if self.ok:
            return
        async with self._lock:
            if self.ok:
                return
            if self._failure is not None and time.monotonic() - self._failed_at < RECHECK_AFTER:
                _raise_for(self._failure)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT * 2):
                    revisions = Revisions(await self.read_revision(), REVISION)
            except TimeoutError as error:
                self._remember(error)
                raise DatabaseUnavailable() from error
            except DatabaseUnavailable as error:
                self._remember(error.__cause__ or error)
                raise
            if revisions.at_head:
                self.ok, self._failure = True, None
                if self._reported is not None:
                    log.warning("the database is at the code's revision %s now: serving again", revisions.code)
                return
            problem = revisions.problem()
            if problem != self._reported:
                log.error("%s; until then every request answers 503", problem)
                self._reported = problem
            self._remember(RevisionMismatch(problem))
            _raise_for(self._failure)

    def _remember(self, cause: BaseException) -> None:
        self._failure, self._failed_at = cause, time.monotonic()


def _raise_for(cause: BaseException | None) -> NoReturn:
    """A fresh exception each time (a cached one would collect every raise's traceback)."""
    if isinstance(cause, RevisionMismatch):
        raise MigrationsPending() from cause
    raise DatabaseUnavailable() from cause
