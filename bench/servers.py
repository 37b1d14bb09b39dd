"""Starting and stopping the servers under test, and watching their memory."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from tests.support import ROOT, free_port, start_server, stop_server, wait_until_healthy


def _peak_rss_kib(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in KiB."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def start_all(servers: list[Server], *, timeout: float = 90) -> None:
    """Start `servers` side by side (their imports overlap), then wait until each answers."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout=timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise


class Server:
    """A server process (`python -m <module>`) on 127.0.0.1:<free port>, its output in `log`.

    `env` is the whole environment of the process (nothing is inherited beyond it).
    """

    def __init__(self, name: str, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.module = module
        self.port = free_port()
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_mib = 0.0  # the largest worker (Sanic's main process only runs the workers)
        self._peaks: dict[int, int] = {}
        self._watching = False
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> Server:
        self.launch()
        return self.wait_ready(timeout=timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to answer (`wait_ready` waits)."""
        with open(self.log, "wb") as log:
            self.process = start_server(
                [sys.executable, "-m", self.module],
                cwd=self.log.parent,  # not the repository: a developer's .env there is not read
                env={"PYTHONPATH": str(ROOT), **self.env},  # a PYTHONPATH given serves another tree (A/B runs)
                output=log,
            )

    def wait_ready(self, *, timeout: float = 60) -> Server:
        assert self.process is not None
        try:
            wait_until_healthy(self.url, self.process, seconds=timeout)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{self.name}: {error}: see {self.log}") from None
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    @property
    def worker_pids(self) -> list[int]:
        """The processes serving requests (Sanic's workers, children of the main process)."""
        return [process.pid for process in self._processes()[1:]]

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server's processes have used so far."""
        total = 0.0
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _processes(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sample(self) -> None:
        for process in self._processes():
            peak = _peak_rss_kib(process.pid)
            self._peaks[process.pid] = max(self._peaks.get(process.pid, 0), peak)
        assert self.process is not None
        workers = [peak for pid, peak in self._peaks.items() if pid != self.process.pid]
        if workers or self._peaks:
            self.peak_rss_mib = max(workers or self._peaks.values()) / 1024

    def _watch(self) -> None:
        while self._watching:
            self._sample()
            time.sleep(0.5)

    def stop(self) -> None:
        self._watching = False
        if self._watcher is not None:
            self._watcher.join()
        if self.process is None or self.process.poll() is not None:
            return
        self._sample()
        stop_server(self.process, seconds=20)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
