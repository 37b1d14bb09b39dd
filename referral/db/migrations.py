"""Is the database at the code's migration? Checked at start and, in each worker, on its first connection.

The code's revision is `referral.db.tables.REVISION` (a test keeps it at `alembic/versions`' head); the
database's is read from Alembic's version table on a connection of the service's own pool
(`ReferralDatabase.read_revision`). `python -m referral` and Sanic's CLI refuse to start when the two
differ (`revisions_at_start`); a database that cannot be reached then is checked on its first
connection instead (`RevisionCheck`). Alembic itself is loaded only to word a mismatch: a worker never
loads it, nor SQLAlchemy's asyncio engine (about 15 MiB a worker: bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

from referral.db.tables import REVISION
from referral.errors import DatabaseUnavailable, MigrationsPending

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


class RevisionCheck:
    """The revision, checked on the first connection and again until the database is at the code's head.

    Until then every use of the database raises MigrationsPending (503, logged as an error) or, while it
    cannot be reached, DatabaseUnavailable. Once at head it is never asked again: `ok` is all a query pays.
    """

    def __init__(self, read_revision: Callable[[], Awaitable[str | None]]) -> None:
        self.read_revision = read_revision  # the database's Alembic revision; DatabaseUnavailable when it cannot answer
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
                revisions = Revisions(await self.read_revision(), REVISION)
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
