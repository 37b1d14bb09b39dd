"""Driving load with wrk (C, one thread) and reading the summary its Lua `done()` prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cpu_us: float | None = None  # CPU time the server's processes spent per answered request (all threads)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages when missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install it with `sudo apt-get install -y wrk`")
    print("wrk is missing: installing it from Debian's packages", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)  # noqa: S603
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


class Wrk:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def command(self, url: str, script: str, *, connections: int, seconds: float) -> list[str]:
        return [
            self.binary,
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--script",
            str(WRK_DIR / f"{script}.lua"),
            url,
        ]

    def start(
        self, url: str, script: str, *, connections: int, seconds: float, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(  # noqa: S603 (wrk against our own loopback server)
            self.command(url, script, connections=connections, seconds=seconds),
            env={**os.environ, "BENCH_WRK_DIR": str(WRK_DIR), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str]) -> LoadResult:
        output, _ = process.communicate(timeout=300)
        for line in output.splitlines():
            if line.startswith("BENCH_JSON "):
                data = json.loads(line.removeprefix("BENCH_JSON "))
                break
        else:
            raise RuntimeError(f"wrk printed no summary:\n{output}")
        return LoadResult(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            errors=sum(data[k] for k in ("connect", "read", "write", "timeout", "status")),
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            mean_ms=data["mean_us"] / 1000,
        )

    def run(
        self, url: str, script: str, *, connections: int, seconds: float, env: dict[str, str] | None = None
    ) -> LoadResult:
        return self.finish(self.start(url, script, connections=connections, seconds=seconds, env=env))
