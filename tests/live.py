"""A live test server per test: the real app on a free port, driven with httpx.

Built on sanic-testing's ReusableClient (server lifecycle and its event loop), so listeners run once
per test, and requests can be sent one by one or many at once (`gather`) to test races.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from sanic import Sanic
from sanic_testing.reusable import ReusableClient

from referral.app import create_app
from referral.config import Settings
from tests.support import free_port

T = TypeVar("T")


def serve(settings: Settings, **changes: Any) -> LiveClient:
    """A live client of the app built from `settings` with `changes`, served in a `with` block (or from `start()`)."""
    return LiveClient(create_app(settings=settings.with_overrides(**changes)))


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

    def __enter__(self) -> LiveClient:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

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

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """GET `target` exactly as written (no client normalises `..` away), on a connection of its own:
        (status, body)."""

        async def send() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            try:
                return await asyncio.wait_for(reader.read(), timeout=30)
            finally:
                writer.close()

        head, _, body = self.run(send()).partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    def gather(self, calls: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
        """Send every call at once, each on its own connection, and return the answers in order."""

        async def send_all() -> list[httpx.Response]:
            clients = [httpx.AsyncClient(base_url=self.base_url, timeout=60, verify=False) for _ in calls]
            try:
                return await asyncio.gather(*(call(client) for call, client in zip(calls, clients, strict=True)))
            finally:
                await asyncio.gather(*(client.aclose() for client in clients))

        return self.run(send_all())

    def post_all(self, path: str, requests: list[dict[str, Any]]) -> list[httpx.Response]:
        """POST to `path` once per item of `requests` (the arguments of each), all at once as `gather` sends."""
        return self.gather(
            [lambda client, arguments=arguments: client.post(path, **arguments) for arguments in requests]
        )
