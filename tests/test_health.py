"""/health, and a database that goes away: 503 while it is down, recovery by itself when it is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from referral.app import create_app
from referral.config import Settings
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.support import free_port


def test_health_answers_when_the_database_does(api):
    answer = api.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok"}


class TcpProxy:
    """Forwards a local port to the database; `stop()` cuts every connection, like a crash."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, upstream_writer}
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


@pytest.fixture
def proxied(settings: Settings) -> Iterator[tuple[LiveClient, TcpProxy]]:
    parts = urlsplit(settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxied_url = settings.database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    with LiveClient(create_app(settings=settings.with_overrides(database_url=proxied_url))) as client:
        client.run(proxy.start())
        yield client, proxy


@pytest.mark.postgres_only
def test_database_down_is_503_then_recovers_by_itself(proxied):
    api, proxy = proxied
    assert api.get("/health").status_code == 200
    assert (
        api.post("/user/register", json={"email": "before@example.com", "password": "a-fine-passphrase"}).status_code
        == 201
    )

    api.run(proxy.stop())
    down = api.get("/health")
    assert_problem(down, 503)
    assert down.headers["retry-after"] == "1"
    for _ in range(2):  # the first may meet a dead pooled connection, the next a refused one
        answer = api.post("/user/register", json={"email": "during@example.com", "password": "a-fine-passphrase"})
        assert_problem(answer, 503)
    assert_problem(api.get("/refer/getcode", params={"email": "before@example.com"}), 503)

    api.run(proxy.start())
    statuses = []
    for _ in range(20):
        statuses.append(api.get("/health").status_code)
        if statuses[-1] == 200:
            break
        api.run(asyncio.sleep(0.1))
    assert statuses[-1] == 200, statuses
    assert (
        api.post("/user/register", json={"email": "after@example.com", "password": "a-fine-passphrase"}).status_code
        == 201
    )


@pytest.mark.postgres_only
def test_starts_while_the_database_is_down(settings):
    unreachable = settings.with_overrides(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing_here"
    )
    with LiveClient(create_app(settings=unreachable)) as client:
        assert_problem(client.get("/health"), 503)
        assert_problem(client.post("/user/auth", json={"email": "a@example.com", "password": "a-fine-passphrase"}), 503)
