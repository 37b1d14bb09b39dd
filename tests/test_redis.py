"""REDIS_URL: code cache invalidations reach every worker, rate-limit counters are shared."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from referral.app import create_app
from referral.cache import INVALIDATION_CHANNEL
from referral.clock import utcnow
from referral.config import Settings
from referral.db.tables import referral_code
from tests.factories import Factory, random_email
from tests.live import LiveClient
from tests.problems import assert_problem
from tests.support import require

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = pytest.mark.sqlite_only


async def _flush() -> None:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
def redis_url() -> str:
    try:
        asyncio.run(_flush())
    except (aioredis.RedisError, OSError) as error:
        require("redis", f"Redis at {REDIS_URL} is unreachable: {error!r}")
    return REDIS_URL


@pytest.fixture
def shared_api(settings: Settings, redis_url: str) -> Iterator[LiveClient]:
    with LiveClient(create_app(settings=settings.with_overrides(redis_url=redis_url))) as client:
        yield client


def test_an_invalidation_from_another_worker_drops_the_cached_code(shared_api):
    make = Factory(shared_api)
    owner = make.user()
    make.code(owner)
    assert shared_api.get("/refer/getcode", params={"email": owner.email}).status_code == 200  # cached now
    retire = referral_code.update().where(referral_code.c.user_id == owner.id).values(retired_at=utcnow())
    shared_api.run(shared_api.app.ctx.db.execute(retire))  # another worker deletes the code...
    assert shared_api.get("/refer/getcode", params={"email": owner.email}).status_code == 200  # still cached

    async def announce() -> None:  # ...and announces it
        client = aioredis.from_url(REDIS_URL)
        try:
            await client.publish(INVALIDATION_CHANNEL, owner.email)
        finally:
            await client.aclose()

    shared_api.run(announce())
    statuses = []
    for _ in range(20):
        statuses.append(shared_api.get("/refer/getcode", params={"email": owner.email}).status_code)
        if statuses[-1] == 404:
            break
        shared_api.run(asyncio.sleep(0.05))
    assert statuses[-1] == 404, statuses


def test_writes_announce_their_invalidations(shared_api):
    make = Factory(shared_api)
    owner = make.user()

    async def update_while_listening() -> list[bytes]:
        client = aioredis.from_url(REDIS_URL)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                await shared_api.http.post("/refer/update_code", json={"day": 2}, headers=owner.auth)
                await shared_api.http.delete("/refer/delete", headers=owner.auth)
                heard = []
                for _ in range(40):
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                    if message is not None:
                        heard.append(message["data"])
                    if len(heard) == 2:
                        break
                return heard
        finally:
            await client.aclose()

    assert shared_api.run(update_while_listening()) == [owner.email.encode()] * 2


def test_rate_limits_are_shared_between_instances(settings, redis_url):
    limited = settings.with_overrides(redis_url=redis_url, rate_limit=True, rate_limit_ip="3/minute")
    with LiveClient(create_app(settings=limited)) as first:
        for _ in range(3):
            assert first.get("/refer/getcode", params={"email": random_email()}).status_code == 404
    with LiveClient(create_app(settings=limited)) as second:  # a fresh memory: only Redis remembers the three
        assert_problem(second.get("/refer/getcode", params={"email": random_email()}), 429)
