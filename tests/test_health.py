"""/health, and a database that goes away: 503 while it is down, recovery by itself when it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from referral.config import Settings
from tests.conftest import settings_on
from tests.factories import login, register
from tests.live import LiveClient, serve
from tests.problems import assert_problem
from tests.support import TcpProxy, free_port


def test_health_answers_when_the_database_does(api):
    answer = api.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("path", ["/health", "/docs", "/docs/swagger", "/docs/openapi.json"])
def test_head_answers_as_get_without_the_body(api_once, path):
    """Some load balancers probe with HEAD: the status and headers of GET, and no body."""
    got, head = api_once.get(path), api_once.request("HEAD", path)
    assert head.status_code == got.status_code in (200, 302)
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers.get("content-length") == got.headers.get("content-length")


@pytest.fixture
def proxied(settings: Settings) -> Iterator[tuple[LiveClient, TcpProxy]]:
    parts = urlsplit(settings.database_url)
    with TcpProxy(parts.port or 5432, parts.hostname or "127.0.0.1") as proxy:
        proxied_url = settings.database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        with serve(settings, database_url=proxied_url) as client:
            yield client, proxy


@pytest.mark.postgres_only
def test_database_down_is_503_then_recovers_by_itself(proxied):
    api, proxy = proxied
    assert api.get("/health").status_code == 200
    assert register(api, "before@example.com", "a-fine-passphrase").status_code == 201

    proxy.cut()
    down = api.get("/health")
    assert_problem(down, 503)
    assert down.headers["retry-after"] == "1"
    for _ in range(2):  # the first may meet a dead pooled connection, the next a refused one
        assert_problem(register(api, "during@example.com", "a-fine-passphrase"), 503)
    assert_problem(api.get("/refer/getcode", params={"email": "before@example.com"}), 503)

    proxy.restore()
    statuses = []
    for _ in range(20):
        statuses.append(api.get("/health").status_code)
        if statuses[-1] == 200:
            break
        api.run(asyncio.sleep(0.1))
    assert statuses[-1] == 200, statuses
    assert register(api, "after@example.com", "a-fine-passphrase").status_code == 201


def test_starts_while_the_database_is_down(postgres_server):
    with serve(settings_on(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing_here")) as client:
        assert_problem(client.get("/health"), 503)
        assert_problem(login(client, "a@example.com", "a-fine-passphrase"), 503)
