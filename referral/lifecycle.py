"""Starting and stopping the server processes: the checks that refuse a start, and the stop signals Sanic
alone does not survive.

**Start.** `preflight()` runs in the main process of `python -m referral` and of Sanic's CLI, before any
worker exists: a configuration error or a database that is not at the code's migration stops the start
with one line on stderr and exit status 2 (no traceback). A database that cannot be reached does not:
the workers check its revision on the first connection (`referral.db.migrations.RevisionCheck`).
It runs there and not in a `before_server_start` listener because Sanic answers an exception in a worker's
listener with the worker's traceback, then kills the whole process group with SIGKILL.

**Stop.** Signal the main process (Docker, Kubernetes, systemd with `KillMode=mixed`; Sanic's answer in its
issues #1085 and #2948): Sanic forwards a SIGINT to each worker, which finishes its requests in flight (up to
GRACEFUL_SHUTDOWN_TIMEOUT), closes its pools and exits; the main process exits 0. Ctrl-C in a terminal
(SIGINT to the whole process group) stops everything too. What Sanic 25.12 does not do alone:

- A stop signal before every worker has acknowledged its start hangs the main process for ever:
  `WorkerManager.shutdown_signal` sends its stop message (`None`) to the monitor pipe and terminates the
  workers, but `WorkerManager.wait_for_ack` answers every message other than "__TERMINATE_EARLY__" by
  sending it back to the pipe and looping, so it spins on it while the workers it waits for are gone.
  `EarlyStop` holds such a signal (`hold_stop_signals` before Sanic's manager exists) and sends it again once
  the manager shows every worker acknowledged. Workers ignore stop signals while they start
  (`ignore_stop_signals`); one killed during its imports is reported to Sanic as a failed start at once.
- A worker that crashes once serving is never replaced: `referral.workers.WorkerWatcher` replaces it. A stop
  signal ends its watching first (`EarlyStop.handle`), so no worker is started behind Sanic's shutdown.
- On Ctrl-C each worker gets two signals (the terminal's and the main process's), and Sanic's handler stops
  the event loop once per signal: the second lands in its shutdown and fails it with "Event loop stopped
  before Future completed" while a request is in flight. `stop_once`: later signals are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from sanic.worker.constants import ProcessState
from sanic.worker.multiplexer import WorkerMultiplexer

from referral.config import ConfigError, Settings, load_settings
from referral.db.database import revisions_at_start
from referral.errors import DatabaseUnavailable
from referral.logs import configure_logging
from referral.workers import WorkerWatcher

if TYPE_CHECKING:
    from sanic import Sanic
    from sanic.worker.manager import WorkerManager

log = logging.getLogger("referral.lifecycle")

EXIT_REFUSED = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORKER_POLL_SECONDS = 0.05
Handler = Callable[[int, FrameType | None], Any]


def refuse_to_start(problem: str) -> NoReturn:
    """One line on stderr and exit status 2: what is wrong and, where there is one, the command that fixes it."""
    print(f"referral: {problem}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_REFUSED)


def preflight() -> Settings:
    """The settings, once the database is known to be at the code's migration (or unreachable for now)."""
    try:
        settings = load_settings()
    except ConfigError as error:
        refuse_to_start(str(error))
    configure_logging(settings.log_format)  # the warning below in LOG_FORMAT too
    try:
        revisions = asyncio.run(revisions_at_start(settings))
    except DatabaseUnavailable as error:
        log.warning(
            "the database cannot be reached (%r): starting anyway; requests answer 503 until it can, "
            "and its migration is checked then",
            error.__cause__,
        )
        return settings
    except Exception as error:  # no such database, a refused password: waiting will not fix it
        refuse_to_start(f"cannot read the database's migration: {error}")
    if not revisions.at_head:
        refuse_to_start(revisions.problem())
    return settings


def in_worker_process() -> bool:
    """True in a Sanic worker process (Sanic names each one in the environment it starts it with)."""
    return bool(os.environ.get("SANIC_WORKER_NAME"))


# --- stop signals while the processes start ------------------------------------------------------------

_held: list[int] = []  # stop signals that arrived before Sanic's manager existed


def hold_stop_signals() -> None:
    """In the main process just before `Sanic.serve`: a stop signal is held until `EarlyStop` takes it over.
    Acted on there, it would kill the main process with its workers half-started (exit status -15, their
    tracebacks)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _held.append(signum))


class EarlyStop:
    """In the main process, in front of Sanic's stop handlers: a stop signal is held until every worker has
    acknowledged its start, then sent again, to Sanic's handler this time.

    Sanic's manager marks a worker ACKED (`WorkerProcess.state`) only in its monitor loop, which runs once
    `wait_for_ack` is over. Only the first held signal counts; later ones are dropped until then. The held
    stop is handed to Sanic's handler in the thread that waited, not sent as a signal again: a signal
    interrupts the main thread wherever it is, also in the middle of its own exchange with Sanic's state
    manager, and the handler's exchange on the same connection then garbles both (UnpicklingError).
    """

    def __init__(self, manager: WorkerManager, watcher: WorkerWatcher) -> None:
        self.manager = manager
        self.watcher = watcher
        self.sanic_handlers: dict[int, Handler] = {}
        for sig in STOP_SIGNALS:
            handler = signal.getsignal(sig)
            assert callable(handler), "Sanic's WorkerManager installs its stop handlers first"
            self.sanic_handlers[sig] = handler
        self.held = False
        self.passed_on = False
        self.claim = threading.RLock()  # who hands the stop to Sanic first: the main thread or `_resend`

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.handle)
        if _held:  # before Sanic's manager existed (`hold_stop_signals`)
            self.handle(_held[0], None)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.watcher.stop()  # a worker it is restarting has started when this returns: Sanic's shutdown stops it
        if self.workers_acknowledged():
            with self.claim:
                self.passed_on = True
            self.sanic_handlers[signum](signum, frame)
        elif not self.held:
            self.held = True
            log.info("%s while the workers start: stopping once they serve", signal.Signals(signum).name)
            threading.Thread(target=self._resend, args=(signum,), name="referral-early-stop", daemon=True).start()

    def workers_acknowledged(self) -> bool:
        return all(process.state >= ProcessState.ACKED for process in self.manager.transient_processes)

    def _resend(self, signum: int) -> None:
        while not self.workers_acknowledged():
            if not self.watcher.serving and any(p.exitcode is not None for p in self.manager.transient_processes):
                # Killed during its imports (Ctrl-C: the group's SIGINT), it never acknowledges; Sanic would
                # wait 30 s for it, then SIGKILL the group. This is how a worker tells it that it failed. (Once
                # serving, a worker that dies is marked FAILED, which counts as acknowledged here.)
                WorkerMultiplexer(self.manager.monitor_publisher, {}).terminate(early=True)
                return
            time.sleep(WORKER_POLL_SECONDS)
        with self.claim:
            if self.passed_on:  # a signal that came meanwhile already stopped it
                return
            self.passed_on = True
        self.sanic_handlers[signum](signum, None)


def supervise_workers(app: Sanic) -> None:
    """`main_process_ready` listener (multi-process mode only): see `EarlyStop` and `referral.workers`."""
    watcher = WorkerWatcher(app.manager, app.shared_ctx)
    EarlyStop(app.manager, watcher).install()
    watcher.start()


def ignore_stop_signals() -> None:
    """In a worker, from the app factory until Sanic's handlers take over: killed half-started (the terminal's
    Ctrl-C), it would never acknowledge, and Sanic would end the start with SIGKILL to the whole group. The
    main process sends it a stop once every worker has acknowledged (`EarlyStop`)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


async def stop_once(app: Sanic) -> None:
    """`after_server_start` listener in a worker: the first stop signal stops it gracefully and later ones are
    ignored. Sanic's own handler stops the loop once per signal, and on Ctrl-C a worker gets two (the
    terminal's and the one the main process forwards): the second, in Sanic's shutdown, fails it with "Event
    loop stopped before Future completed" while a request is in flight."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)  # Sanic's shutdown then finds no handler to reset
        log.debug("%s: finishing the requests in flight, then stopping", signal.Signals(signum).name)
        app.stop(terminate=False)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
