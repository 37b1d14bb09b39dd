"""Fixtures: a clean database per test on each backend, the app, a live client, and factories."""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sanic import Sanic

from referral.clock import utcnow
from referral.config import Settings, load_settings
from referral.db.tables import referral_code
from tests.databases import PREVIOUS, PostgresDatabase, SQLiteTemplate, migrate
from tests.factories import Factory
from tests.live import LiveClient, serve
from tests.support import (
    POSTGRES_SERVER_URL,
    REDIS_URL,
    TEST_INTEGRATION_KEY,
    TEST_SECRET,
    TcpProxy,
    ThrowawayPostgres,
    postgres_reachable,
    redoc_problem,
    require,
)

Sanic.test_mode = True

BACKENDS = ("sqlite", "postgres")
OTHER = {"sqlite": "postgres", "postgres": "sqlite"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SQLiteTemplate:
    return SQLiteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test PostgreSQL server's URL; skipped when it is unreachable, failed under REQUIRE_POSTGRES=1."""
    require("postgres", postgres_reachable())
    return POSTGRES_SERVER_URL


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """The test Redis (TEST_REDIS_URL); skipped when it is unreachable, failed under REQUIRE_REDIS=1."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        require("redis", f"Redis at {REDIS_URL} is unreachable: {error!r}")
    yield client
    client.close()


@pytest.fixture
def service_name(redis_client: redis.Redis) -> Iterator[str]:
    """A SERVICE_NAME of the test's own: every Redis key the service writes begins with it; deleted at the end."""
    name = f"referral-test-{secrets.token_hex(4)}"
    yield name
    for key in redis_client.scan_iter(match=f"{name}:*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def redis_proxy(redis_client: redis.Redis) -> Iterator[TcpProxy]:
    """A TcpProxy in front of the test Redis, to cut, stall and restore (its URL: `proxied_redis_url`)."""
    with TcpProxy(redis_client.connection_pool.connection_kwargs["port"]) as proxy:
        yield proxy


@pytest.fixture
def proxied_redis_url(redis_proxy: TcpProxy, redis_client: redis.Redis) -> str:
    return f"redis://127.0.0.1:{redis_proxy.port}/{redis_client.connection_pool.connection_kwargs['db']}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """An `async def` test runs to its end in an event loop of its own, as `asyncio.run` runs a coroutine."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    asyncio.run(test(**{name: pyfuncitem.funcargs[name] for name in inspect.signature(test).parameters}))
    return True


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase()
    yield database
    database.drop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that touches a database runs once per backend (or only on the one it is marked for)."""
    if "backend" in metafunc.fixturenames:
        backends = [name for name in BACKENDS if not metafunc.definition.get_closest_marker(f"{OTHER[name]}_only")]
        metafunc.parametrize("backend", backends)


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """A clean, migrated database: (url, schema)."""
    if backend == "sqlite":
        return request.getfixturevalue("sqlite_template").fresh_url(tmp_path), None
    postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
    postgres.truncate()
    return postgres.url, postgres.schema


def settings_on(url: str, schema: str | None = None) -> Settings:
    """The tests' settings on the database at `url`: cheap hashes, no rate limits, the test integration key,
    nothing from the environment."""
    return load_settings(
        env={},
        secret_key=TEST_SECRET,
        database_url=url,
        db_schema=schema,
        bcrypt_rounds=4,
        rate_limit=False,
        integration_keys=TEST_INTEGRATION_KEY,
    )


@pytest.fixture
def settings(database: tuple[str, str | None]) -> Settings:
    return settings_on(*database)


@pytest.fixture(scope="module")
def api_once(sqlite_template: SQLiteTemplate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveClient]:
    """A live app for tests that do not touch the database, so run once, not per backend: served for the
    whole module on a copy of the SQLite template."""
    with serve(settings_on(sqlite_template.fresh_url(tmp_path_factory.mktemp("api-once")))) as client:
        yield client


@pytest.fixture
def empty_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A database of the test's own, not migrated (PostgreSQL: a throwaway one, in `custom_schema`): (url, schema)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'own.db'}", None
        return
    request.getfixturevalue("postgres_server")  # skips or fails when PostgreSQL is unreachable
    with ThrowawayPostgres("referral_own") as database:
        yield database.url, "custom_schema"


@pytest.fixture
def behind(empty_database: tuple[str, str | None]) -> tuple[str, str | None]:
    """A database migrated up to the revision before the code's: (url, schema)."""
    migrate(*empty_database, PREVIOUS)
    return empty_database


@pytest.fixture
def api(settings: Settings) -> Iterator[LiveClient]:
    """A live app built from the test settings."""
    with serve(settings) as client:
        yield client


@pytest.fixture
def redoc_installed() -> None:
    """Skips when `make venv` had no npm to fetch ReDoc with; a failure under REQUIRE_BROWSER=1 (CI)."""
    require("browser", redoc_problem())


@pytest.fixture
def make(api: LiveClient) -> Factory:
    return Factory(api)


@pytest.fixture
def expire_codes(api: LiveClient) -> Callable[..., None]:
    """Move a user's live code into the past, as if its days had run out."""

    def expire(user_id: int) -> None:
        db = api.app.ctx.db
        past = utcnow() - timedelta(seconds=1)
        query = (
            referral_code.update()
            .where(referral_code.c.user_id == user_id, referral_code.c.retired_at.is_(None))
            .values(expires_at=past)
        )
        api.run(db.execute(query))
        api.app.ctx.cache.clear()

    return expire


@pytest.fixture
def serve_app(settings: Settings) -> Iterator[Any]:
    """Serve an app built from the test settings with `changes`."""
    clients: list[LiveClient] = []

    def start(**changes: Any) -> LiveClient:
        client = serve(settings, **changes)
        client.start()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.stop()
