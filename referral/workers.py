"""Server workers that come back. Sanic 25.12 marks a crashed worker FAILED and does nothing else: the service
would go on with one worker fewer (half the throughput with two), `/health` still 200, and systemd unaware.

`WorkerWatcher`, a thread of the main process, starts watching once every worker acknowledged its first start (a
worker that dies before that keeps Sanic's behaviour, see `referral.lifecycle.EarlyStop`). A server worker that
crashes (killed by a signal, or a non-zero exit status) is logged at ERROR, counted in
`referral_worker_restarts_total` and restarted with `WorkerManager.restart`. `CRASH_LOOP_DEATHS` deaths within
`CRASH_LOOP_SECONDS` is a crash loop that restarting will not fix: one ERROR line, and the service stops with
exit status 3 for its supervisor (systemd's `Restart=on-failure`) to take over. A stop signal ends the watching
(`stop`, from `EarlyStop`): a stop is never taken for deaths, and no worker is started behind Sanic's shutdown.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from multiprocessing import Value
from typing import TYPE_CHECKING

from sanic.worker.constants import ProcessState

from referral.metrics import forget_worker

if TYPE_CHECKING:
    from sanic import Sanic
    from sanic.types.shared_ctx import SharedContext
    from sanic.worker.manager import WorkerManager
    from sanic.worker.process import WorkerProcess

log = logging.getLogger("referral.workers")

EXIT_CRASH_LOOP = 3
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_SECONDS = 60.0
POLL_SECONDS = 0.1
_watchers: list[WorkerWatcher] = []  # this main process's, for `exit_status`


def share_counts(app: Sanic) -> None:
    """`main_process_start` listener: what the main process counts, readable by the worker answering /metrics
    (a worker's own registry never sees the main process's values)."""
    app.shared_ctx.worker_restarts = Value("q", 0)
    app.shared_ctx.live_workers = Value("q", 0)


def exit_status() -> int:
    """The main process's exit status once Sanic has stopped: 3 after a crash loop, else 0."""
    return EXIT_CRASH_LOOP if any(watcher.gave_up for watcher in _watchers) else 0


def death(exitcode: int) -> str:
    if exitcode > 0:
        return f"exit status {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


class WorkerWatcher:
    """Restarts crashed server workers and keeps `app.shared_ctx`'s counts (`share_counts`)."""

    def __init__(self, manager: WorkerManager, shared: SharedContext) -> None:
        self.manager = manager
        self.restarts = shared.worker_restarts
        self.live = shared.live_workers
        self.lock = threading.RLock()  # held while restarting: a stop signal waits for the new process to start
        self.stopping = False
        self.serving = False  # every worker acknowledged its first start
        self.gave_up = False
        self.deaths: deque[float] = deque()
        self.reported: dict[str, int] = {}  # worker name: pid of its last death logged and counted
        _watchers.append(self)

    def start(self) -> None:
        threading.Thread(target=self.run, name="referral-worker-watcher", daemon=True).start()

    def stop(self) -> None:
        """A stop signal (in the main thread): a restart in progress finishes first, and none follows."""
        with self.lock:
            self.stopping = True

    def run(self) -> None:
        while not self.stopping:
            processes = list(self.manager.transient_processes)
            if self.serving:
                for process in processes:
                    self.check(process)
                self.live.value = sum(p.state is ProcessState.ACKED and p.is_alive() for p in processes)
            else:
                self.serving = all(process.state >= ProcessState.ACKED for process in processes)
            time.sleep(POLL_SECONDS)

    def check(self, process: WorkerProcess) -> None:
        pid, exitcode = process.pid, process.exitcode
        if pid is not None and not exitcode:
            return  # serving or starting (or stopped on purpose: exit status 0)
        if pid is not None and self.reported.get(process.name) != pid:  # None: a restart that did not start
            self.reported[process.name] = pid
            forget_worker(pid)
            if not self.counted(f"worker {process.ident} (pid {pid}) died: {death(exitcode)}"):
                return
        with self.lock:
            if self.stopping:
                return
            try:
                self.manager.restart([process.name])
                return
            except Exception as error:  # Sanic's monitor loop changed its state meanwhile: again at the next poll
                failure = error
        log.warning("worker %s could not be restarted (%r): trying again", process.ident, failure)

    def counted(self, what: str) -> bool:
        """Log and count a death; False (and the service stopping) when it makes a crash loop."""
        now = time.monotonic()
        self.deaths.append(now)
        while now - self.deaths[0] > CRASH_LOOP_SECONDS:
            self.deaths.popleft()
        if len(self.deaths) < CRASH_LOOP_DEATHS:
            self.restarts.value += 1
            log.error("%s; restarting it", what)
            return True
        log.error(
            "%s; %d worker deaths within %g s: stopping the service (exit status %d)",
            what,
            len(self.deaths),
            CRASH_LOOP_SECONDS,
            EXIT_CRASH_LOOP,
        )
        self.gave_up = True
        self.stop()
        self.manager.shutdown_signal(signal.SIGTERM, None)  # Sanic's graceful stop, here (see `EarlyStop`)
        return False
