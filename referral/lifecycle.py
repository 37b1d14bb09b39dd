"""Starting and stopping the server processes: the checks that refuse a start, and stop signals that let
requests finish.

**Start.** `preflight()` runs in the main process of `python -m referral` and of Sanic's CLI, before any
worker exists: a configuration error or a database that is not at the code's migration stops the start
with one line on stderr and exit status 2 (no traceback). A database that cannot be reached does not:
the workers check its revision on the first connection (`referral.db.migrations.RevisionCheck`).
It runs there and not in a `before_server_start` listener because Sanic answers an exception in a worker's
listener with the worker's traceback, then kills the whole process group with SIGKILL.

**Stop.** SIGTERM (systemd) or Ctrl-C lets in-flight requests finish (up to Sanic's
GRACEFUL_SHUTDOWN_TIMEOUT), closes the pools and exits. Sanic 25.12 alone does not, in two ways:

- Every worker gets two stop signals: the one sent to the process group (systemd, or the terminal's
  Ctrl-C) and the SIGINT the main process forwards to each worker. Sanic's handler stops the event loop
  on both; the second stop lands in its shutdown sequence (`_cleanup` in `sanic/server/runners.py`),
  which fails with "Event loop stopped before Future completed": the in-flight request never gets its
  answer, the pools are never closed, and aiosqlite's non-daemon threads keep the worker (and the main
  process waiting to join it) alive for ever. Once the handlers are removed, a late SIGINT raises
  KeyboardInterrupt instead, and a thread finishing a query on the closed loop prints aiosqlite's
  "RuntimeError: Event loop is closed". `stop_once`: the first signal stops the worker, later ones are
  ignored.
- A stop signal before every worker has acknowledged its start hangs the main process for ever:
  `WorkerManager.shutdown_signal` sends its stop message (`None`) to the monitor pipe and terminates the
  workers, but `WorkerManager.wait_for_ack` (sanic/worker/manager.py) answers every message other than
  "__TERMINATE_EARLY__" by sending it back to the pipe and looping at once, without counting a miss, so
  it spins on that message for ever while the workers it waits for are gone. `StartupSignals`: the
  main process holds a stop signal until every worker has acknowledged, then lets Sanic act on it;
  workers start with stop signals ignored (so none dies half-started) and hold one that arrives during
  their start until they serve.
- A SIGTERM sent to the whole process group (systemd's default KillMode=control-group) also reached the
  process in which Sanic keeps the workers' states (a `multiprocessing` manager): it died at once, and the
  main process crashed on its next look at a state (BrokenPipeError) instead of waiting for its workers.
  `prepare_main_process`: that process starts with stop signals ignored (Sanic shuts it down at the end).
"""

from __future__ import annotations

import _posixsubprocess
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

from referral.config import ConfigError, Settings, load_settings
from referral.db.database import revisions_at_start
from referral.errors import DatabaseUnavailable
from referral.logs import configure_logging

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


def settings_or_refuse() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        refuse_to_start(str(error))


def preflight() -> Settings:
    """The settings, once the database is known to be at the code's migration (or unreachable for now)."""
    settings = settings_or_refuse()
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


# --- the main process ------------------------------------------------------------------------------------

_held: list[int] = []  # stop signals that arrived before this process could act on them


def _hold(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


class ChildrenIgnoreStopSignals:
    """While active (in the main thread): every process started meanwhile starts with stop signals
    ignored, and this one holds them with `handler`, except during each start itself.

    An ignored disposition is the only one a new program inherits (handlers are reset; the mask of
    blocked signals is not kept either: Python 3.11's spawn even clears it in the parent). So stop
    signals are ignored here exactly while `_posixsubprocess.fork_exec` (how multiprocessing's spawn
    starts a process) runs: a profile hook on that one call. Only a signal sent during those
    milliseconds is lost.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._previous: Any = None

    def __enter__(self) -> ChildrenIgnoreStopSignals:
        _handle(set(STOP_SIGNALS), self.handler)
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *_: object) -> None:
        sys.setprofile(self._previous)

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if arg is _posixsubprocess.fork_exec:
            if event == "c_call":
                _ignore(set(STOP_SIGNALS))
            elif event in ("c_return", "c_exception"):
                _handle(set(STOP_SIGNALS), self.handler)
        if self._previous is not None:
            self._previous(frame, event, arg)


_starting_sanic = ChildrenIgnoreStopSignals(_hold)


def prepare_main_process() -> None:
    """Just before `Sanic.serve` in the main process: stop signals are held until Sanic's workers have
    started, and the process Sanic starts first (the manager of its workers' states) ignores them: a
    SIGTERM to the process group (systemd) must leave it alone. Until `main_process_start`."""
    _starting_sanic.__enter__()


def hold_main_signals(_app: Sanic) -> None:
    """`main_process_start` listener: Sanic's state manager has started (`StartupSignals` takes the held
    signals over once Sanic's worker manager exists)."""
    if sys.getprofile() == _starting_sanic._profile:
        _starting_sanic.__exit__()


def _ignore(signals: set[int]) -> None:
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


def _handle(signals: set[int], handler: Handler) -> None:
    for sig in signals:
        signal.signal(sig, handler)


class StartupSignals:
    """Holds a stop signal in the main process until every worker has acknowledged its start, then hands it
    to Sanic's handler (installed by `guard_main_process`, once Sanic's worker manager exists)."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager
        self.sanic_handlers: dict[int, Handler] = {}
        self.started = False
        self.pending: int | None = _held[-1] if _held else None
        self._claim = threading.Lock()  # taken once, without waiting: whoever hands the pending signal on

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            handler = signal.getsignal(sig)
            assert callable(handler), "Sanic's WorkerManager installs its stop handlers first"
            self.sanic_handlers[sig] = handler
        start = self.manager.start

        def start_workers() -> None:
            # Workers start with stop signals ignored: none can die half-started (it would never
            # acknowledge, and Sanic would wait for it, then SIGKILL the group); each takes them again
            # from its app factory on (`hold_stop_signals`).
            with ChildrenIgnoreStopSignals(self.handle):
                start()
            threading.Thread(target=self._wait_for_workers, name="referral-start", daemon=True).start()

        self.manager.start = start_workers  # type: ignore[method-assign]

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.started:
            if self.pending is None:
                log.info("%s while the workers start: stopping once they serve", signal.Signals(signum).name)
            self.pending = signum
            if not self.started or not self._claim.acquire(blocking=False):
                return  # _wait_for_workers hands it on
        self.sanic_handlers[signum](signum, frame)

    def _wait_for_workers(self) -> None:
        while not self._monitoring():
            time.sleep(WORKER_POLL_SECONDS)
        self.started = True
        if self.pending is not None and self._claim.acquire(blocking=False):
            os.kill(os.getpid(), self.pending)  # handled in the main thread, now by Sanic's handler

    def _monitoring(self) -> bool:
        """True once the main thread is past `wait_for_ack` in `WorkerManager.monitor`: every worker has
        acknowledged its start, and Sanic's stop message no longer loops. (The workers' states cannot
        tell: Sanic's own stop marks them terminated, and `wait_for_ack` notices an ack only every 0.1 s.)"""
        try:
            monitor, wait_for_ack = type(self.manager).monitor.__code__, type(self.manager).wait_for_ack.__code__
        except AttributeError:  # another Sanic: act as it does
            return True
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        codes = set()
        while frame is not None:
            codes.add(frame.f_code)
            frame = frame.f_back
        return monitor in codes and wait_for_ack not in codes


def guard_main_process(app: Sanic) -> None:
    """`main_process_ready` listener: see `StartupSignals`."""
    manager = getattr(app, "_manager", None)  # None when Sanic runs a single process
    if manager is not None:
        StartupSignals(manager).install()


# --- each worker -----------------------------------------------------------------------------------------


def hold_stop_signals() -> None:
    """In a worker, from the app factory on: a stop signal is kept until the worker serves (`stop_once`)."""
    _handle(set(STOP_SIGNALS), _hold)


async def stop_once(app: Sanic) -> None:
    """`after_server_start` listener in a worker: the first stop signal stops it gracefully, later ones are
    ignored (Sanic's own handler stopped the loop once per signal, see the module's docstring)."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)  # Sanic's shutdown then finds no handler to reset
        log.debug("%s: finishing the requests in flight, then stopping", signal.Signals(signum).name)
        app.stop(terminate=False)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    if _held:  # stop once serving: a stop now would end Sanic's start-up step instead, and be lost
        app.add_task(_stop_when_serving(app, stop, _held[0]), name="referral-held-stop")


async def _stop_when_serving(app: Sanic, stop: Callable[[int], None], signum: int) -> None:
    while not app.state.is_running:  # noqa: ASYNC110 (no event: Sanic sets it just before its loop runs for good)
        await asyncio.sleep(0.01)
    stop(signum)
