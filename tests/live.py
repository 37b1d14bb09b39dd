"""A live test server per test: the real app on a free port, driven with httpx.

Built on sanic-testing's ReusableClient (server lifecycle and its event loop), so listeners run once
per test, and requests can be sent one by one or many at once (`gather`) to test races.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sanic import Sanic
from sanic_testing.reusable import ReusableClient

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveClient:
    def __init__(self, app: Sanic) -> None:
        self.port = free_port()
        self._server = ReusableClient(app, port=self.port)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.http: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._server.run()
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30, verify=False)

    def stop(self) -> None:
        if self.http is not None:
            self.run(self.http.aclose())
        self._server.stop()

    def run(self, awaitable: Awaitable[T]) -> T:
        return self._server._loop.run_until_complete(awaitable)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None
        return self.run(self.http.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def gather(self, calls: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
        """Send every call at once, each on its own connection, and return the answers in order."""

        async def send_all() -> list[httpx.Response]:
            clients = [httpx.AsyncClient(base_url=self.base_url, timeout=60, verify=False) for _ in calls]
            try:
                return await asyncio.gather(*(call(client) for call, client in zip(calls, clients, strict=True)))
            finally:
                await asyncio.gather(*(client.aclose() for client in clients))

        return self.run(send_all())


def wait_until_healthy(
    base_url: str, process: subprocess.Popen, *, seconds: float = 30, log: Path | None = None
) -> None:
    """Poll `/health` of a server started as `process` until it answers 200; RuntimeError otherwise."""

    def failure(what: str) -> RuntimeError:
        return RuntimeError(what + (f":\n{log.read_text()}" if log is not None else ""))

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failure(f"the server exited early with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise failure(f"the server did not answer within {seconds:g} s")
