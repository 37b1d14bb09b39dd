"""REDIS_URL in one process: the code cache in Redis (leases against stale fills, TTLs, outages), the
shared rate-limit counters and each network's hash slots. Separate processes are in test_redis_processes.py.

Each test uses a key prefix (SERVICE_NAME) of its own and deletes its keys at the end, so tests and
test runs sharing one Redis never see each other's keys.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

import referral.security
from referral.cache import ENTRY_VERSION, CodeCache, email_key, encode
from referral.clock import utcnow
from referral.config import ConfigError, Settings, load_settings
from referral.db import codes as code_queries
from referral.redis_link import RETRY_INTERVAL, RedisLink
from referral.security import NetworkSlots
from referral.services.models import CodeInfo
from tests.factories import Factory, random_email
from tests.factories import code_info as code
from tests.live import serve
from tests.problems import assert_problem
from tests.support import REDIS_URL

PATIENT_MS = 3000  # a machine busy with other tests never trips the breaker where sharing is asserted

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def shared_settings(settings: Settings, service_name: str) -> Settings:
    return settings.with_overrides(redis_url=REDIS_URL, service_name=service_name, redis_timeout_ms=PATIENT_MS)


@asynccontextmanager
async def linked(
    prefix: str, url: str = REDIS_URL, *, retry_interval: float = RETRY_INTERVAL
) -> AsyncIterator[RedisLink]:
    """A patient RedisLink writing keys under `prefix`, closed at the end."""
    link = RedisLink(url, prefix=prefix, timeout=PATIENT_MS / 1000, retry_interval=retry_interval)
    try:
        yield link
    finally:
        await link.close()


def entry_key(prefix: str, email: str, *, kind: str = "code") -> str:
    """The Redis key of `email`'s cache entry (or lease) under a cache built without a secret_key."""
    return f"{prefix}:{kind}:{email_key(email, '')}"


async def wait_until_up(link: RedisLink, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not link.up:
        assert time.monotonic() < deadline, "Redis never came back"
        await asyncio.sleep(0.02)


async def test_the_cache_lives_in_redis_with_a_ttl_capped_by_the_setting_and_the_code(redis_client, service_name):
    async with linked(service_name) as link:
        cache = CodeCache(ttl=60, redis=link)
        for email, entry, cap_ms in (
            ("long@example.com", code(timedelta(days=1)), 60_000),
            ("short@example.com", code(timedelta(seconds=5)), 5_000),
        ):
            await cache.put(email, entry, ticket=await cache.fill_ticket(email))
            assert await cache.get(email) == entry
            assert cap_ms - 2_000 < redis_client.pttl(entry_key(service_name, email)) <= cap_ms
        gone = code(timedelta(seconds=-1))
        await cache.put("gone@example.com", gone, ticket=await cache.fill_ticket("gone@example.com"))
        assert not redis_client.exists(entry_key(service_name, "gone@example.com"))  # an expired code is not stored


async def test_a_cached_code_is_never_served_past_its_expiry(redis_client, service_name):
    async with linked(service_name) as link:
        stale = encode(code(timedelta(seconds=-1)), filled_at=time.time())
        redis_client.set(entry_key(service_name, "a@example.com"), stale, px=60_000)  # as if the clock had moved on
        assert await CodeCache(ttl=60, redis=link).get("a@example.com") is None


FILLED = time.time()
EXPIRES = (utcnow() + timedelta(days=30)).replace(microsecond=0)
GOOD = {"user_id": 1, "code": "CODE-1", "expires_at": EXPIRES.isoformat(), "max_uses": 5}
READABLE = json.dumps({"version": ENTRY_VERSION, "filled_at": FILLED, "code": GOOD})


def readable_but(**code_changes: object) -> dict:
    """An entry of this version filled now, of GOOD's code with `code_changes`."""
    return {"version": ENTRY_VERSION, "filled_at": FILLED, "code": {**GOOD, **code_changes}}


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"version": ENTRY_VERSION + 1, "filled_at": FILLED, "code": GOOD}, id="a future version"),
        pytest.param({"version": 1, "filled_at": FILLED, "code": GOOD}, id="version 1 (codes without max_uses)"),
        pytest.param(readable_but(max_uses=0), id="max_uses 0"),
        pytest.param(f"1|{FILLED}|{EXPIRES.isoformat()}|CODE-1", id="the pipe-delimited entry before versions"),
        pytest.param(readable_but(user_id=-5), id="user id -5"),
        pytest.param(readable_but(user_id=2**64), id="user id over 64 bits"),
        pytest.param(readable_but(code="X" * 2**20), id="a 1 MB code"),
        pytest.param(readable_but(code="no spaces"), id="a code with a space"),
        pytest.param(readable_but(expires_at="9999-12-31T00:00:00+00:00"), id="year 9999"),
        pytest.param(readable_but(expires_at=EXPIRES.isoformat()[:-6]), id="a naive datetime"),
        pytest.param(
            f'{{"version": {ENTRY_VERSION}, "filled_at": NaN, "code": {json.dumps(GOOD)}}}', id="filled_at nan"
        ),
        pytest.param({"version": ENTRY_VERSION, "filled_at": FILLED + 86_400, "code": GOOD}, id="filled tomorrow"),
        pytest.param({"version": ENTRY_VERSION, "code": GOOD}, id="no filled_at"),
        pytest.param("not json at all", id="not json"),
    ],
)
async def test_an_entry_this_code_cannot_read_or_trust_is_a_miss(redis_client, service_name, entry):
    async with linked(service_name) as link:
        value = entry if isinstance(entry, str) else json.dumps(entry)
        redis_client.set(entry_key(service_name, "a@example.com"), value, px=60_000)
        assert await CodeCache(ttl=60, redis=link).get("a@example.com") is None
        redis_client.set(entry_key(service_name, "a@example.com"), READABLE, px=60_000)
        served = CodeInfo(1, "CODE-1", EXPIRES, 5)
        assert await CodeCache(ttl=60, redis=link).get("a@example.com") == served  # a readable one is served


async def test_keys_name_an_email_by_a_keyed_hash(redis_client, service_name):
    async with linked(service_name) as link:
        keyed = CodeCache(ttl=60, redis=link, secret_key="one secret key that is long enough")
        await keyed.put("a@example.com", code(), ticket=await keyed.fill_ticket("a@example.com"))
        [key] = [key.decode() for key in redis_client.scan_iter(match=f"{service_name}:*")]
        assert "example" not in key
        assert key == f"{service_name}:code:{email_key('a@example.com', 'one secret key that is long enough')}"
        assert email_key("a@example.com", "another secret key, just as long") not in key


async def test_a_fill_that_raced_a_write_is_not_stored(redis_client, service_name):
    async with linked(service_name) as link:
        cache, other_instance = CodeCache(ttl=60, redis=link), CodeCache(ttl=60, redis=link)
        email = "a@example.com"
        ticket = await cache.fill_ticket(email)  # a lookup starts reading the database...
        await other_instance.invalidate(email)  # ...a write commits and invalidates meanwhile...
        await cache.put(email, code(name="STALE"), ticket=ticket)  # ...so its (old) answer is not stored
        assert await cache.get(email) is None
        assert not redis_client.exists(entry_key(service_name, email))

        first = await cache.fill_ticket(email)  # two lookups miss at once: the later lease wins
        second = await other_instance.fill_ticket(email)
        await cache.put(email, code(name="FIRST"), ticket=first)
        assert await cache.get(email) is None
        await other_instance.put(email, code(name="SECOND"), ticket=second)
        assert (await cache.get(email)).code == "SECOND"

        late = await cache.fill_ticket(email)
        # as if the lease had expired (a slow read)
        redis_client.delete(entry_key(service_name, email, kind="code-lease"))
        await cache.put(email, code(name="LATE"), ticket=late)
        assert (await cache.get(email)).code == "SECOND"


@pytest.mark.parametrize("store", ["in process", "redis"])
@pytest.mark.parametrize("write", ["update", "delete"])
def test_a_getcode_that_raced_a_write_never_caches_the_old_state(settings, request, monkeypatch, store, write):
    """The read takes the old row, the write commits and answers, then the read finishes: the next
    getcode must answer the write's state, not the old one the read would have cached."""
    if store == "redis":
        settings = request.getfixturevalue("shared_settings")
    with serve(settings) as api:
        owner = Factory(api).user()
        Factory(api).code(owner, code="old-code")
        real_lookup = code_queries.get_active_code_by_email
        has_read, may_finish = asyncio.Event(), asyncio.Event()

        async def paused_lookup(db, email, *, now):  # the first lookup waits after reading
            monkeypatch.setattr(code_queries, "get_active_code_by_email", real_lookup)
            row = await real_lookup(db, email, now=now)
            has_read.set()
            await may_finish.wait()
            return row

        monkeypatch.setattr(code_queries, "get_active_code_by_email", paused_lookup)

        async def race() -> dict:
            lookup = asyncio.create_task(api.http.get("/refer/getcode", params={"email": owner.email}))
            await has_read.wait()
            if write == "update":
                written = await api.http.post(
                    "/refer/update_code", json={"day": 2, "code": "new-code"}, headers=owner.auth
                )
            else:
                written = await api.http.delete("/refer/delete", headers=owner.auth)
            assert written.status_code in (200, 201), written.text
            may_finish.set()
            assert (await lookup).json()["code"] == "old-code"  # it began before the write: fine
            return written.json()

        written = api.run(race())
        after = api.get("/refer/getcode", params={"email": owner.email})
        if write == "update":
            assert after.json() == written
        else:
            assert after.status_code == 404


async def test_invalidations_that_could_not_reach_redis_are_sent_before_it_is_used_again(
    redis_client, service_name, redis_proxy, proxied_redis_url
):
    async with linked(service_name, proxied_redis_url, retry_interval=0.05) as link:
        cache = CodeCache(ttl=60, redis=link)
        key = entry_key(service_name, "a@example.com")
        await cache.put("a@example.com", code(), ticket=await cache.fill_ticket("a@example.com"))
        assert redis_client.exists(key)
        redis_proxy.cut()
        await cache.invalidate("a@example.com")  # a write while Redis is away: the email is kept
        assert not link.up
        assert await cache.get("a@example.com") is None  # meanwhile: the database
        assert redis_client.exists(key)  # the old entry is still there...
        redis_proxy.restore()
        await wait_until_up(link)
        assert not redis_client.exists(key)  # ...and is gone before Redis is used again


async def test_after_an_outage_entries_filled_before_it_are_not_trusted(
    redis_client, service_name, redis_proxy, proxied_redis_url
):
    """Another instance's write during the outage may have failed to delete them."""
    async with (
        linked(service_name, proxied_redis_url, retry_interval=0.05) as reader_link,
        linked(service_name, proxied_redis_url, retry_interval=60) as writer_link,  # not back during the test
    ):
        reader, writer = CodeCache(ttl=60, redis=reader_link), CodeCache(ttl=60, redis=writer_link)
        await reader.put("a@example.com", code(name="OLD-CODE"), ticket=await reader.fill_ticket("a@example.com"))
        redis_proxy.cut()
        await writer.invalidate("a@example.com")  # cannot reach Redis
        assert await reader.get("a@example.com") is None  # the reader notices the outage
        redis_proxy.restore()
        await wait_until_up(reader_link)
        assert redis_client.exists(entry_key(service_name, "a@example.com"))  # the writer has not come back yet
        assert await reader.get("a@example.com") is None  # but the reader does not serve it
        await reader.put("a@example.com", code(name="NEW-CODE"), ticket=await reader.fill_ticket("a@example.com"))
        assert (await reader.get("a@example.com")).code == "NEW-CODE"  # refilled entries are served again


def slots_key(prefix: str, network: str) -> str:
    return f"{prefix}:hash-slots:{network}"


async def test_a_networks_hash_slots_are_leases_in_redis_shared_by_every_instance(redis_client, service_name):
    """HASH_CONCURRENCY_PER_NETWORK=2 counted in Redis: two instances' slots add up, and come back when given."""
    async with linked(service_name) as first_link, linked(service_name) as second_link:
        first, second = NetworkSlots(2, first_link), NetworkSlots(2, second_link)
        key = slots_key(service_name, "127.0.0.0/24")
        held = [await first.take("127.0.0.0/24"), await second.take("127.0.0.0/24")]
        assert None not in held
        assert redis_client.zcard(key) == 2
        assert await first.take("127.0.0.0/24") is None
        assert await second.take("127.0.0.0/24") is None
        assert await second.take("127.0.1.0/24") is not None  # another network counts on its own
        await first.give_back(held[0])
        assert redis_client.zcard(key) == 1
        held[0] = await second.take("127.0.0.0/24")
        assert held[0] is not None
        for slot in held:
            await second.give_back(slot)
        assert not redis_client.exists(key)


async def test_a_hash_slot_whose_holder_died_ends_by_itself(redis_client, service_name, monkeypatch):
    monkeypatch.setattr(referral.security, "SLOT_LEASE_MS", 200)
    async with linked(service_name) as link:
        slots = NetworkSlots(1, link)
        assert await slots.take("127.0.0.0/24") is not None  # never given back: its process "died"
        assert await slots.take("127.0.0.0/24") is None
        deadline = time.monotonic() + 10
        while await slots.take("127.0.0.0/24") is None:
            assert time.monotonic() < deadline, "the lease never ended"
            await asyncio.sleep(0.05)


async def test_while_redis_is_away_a_networks_hash_slots_count_in_process(
    redis_client, service_name, redis_proxy, proxied_redis_url
):
    async with linked(service_name, proxied_redis_url, retry_interval=60) as link:
        slots = NetworkSlots(2, link)
        in_redis = await slots.take("127.0.0.0/24")
        redis_proxy.cut()
        local = [await slots.take("127.0.0.0/24"), await slots.take("127.0.0.0/24")]
        assert not link.up
        assert None not in local
        assert await slots.take("127.0.0.0/24") is None
        await slots.give_back(local[0])
        assert await slots.take("127.0.0.0/24") is not None
        await slots.give_back(in_redis)  # cannot reach Redis: its lease ends by itself
        redis_proxy.restore()
    assert redis_client.zcard(slots_key(service_name, "127.0.0.0/24")) == 1


def test_an_outage_while_the_app_runs_costs_no_error(shared_settings, redis_proxy, proxied_redis_url, caplog):
    limited = shared_settings.with_overrides(redis_url=proxied_redis_url, rate_limit=True)
    with serve(limited) as api:
        owner = Factory(api).user()
        first = Factory(api).code(owner)
        assert api.get("/refer/getcode", params={"email": owner.email}).json() == first
        redis_proxy.cut()
        second = Factory(api).code(owner, code="during-the-cut")
        for _ in range(3):
            assert api.get("/refer/getcode", params={"email": owner.email}).json() == second
        assert api.delete("/refer/delete", headers=owner.auth).status_code == 200
        assert api.get("/refer/getcode", params={"email": owner.email}).status_code == 404
        warnings = [record for record in caplog.records if record.name == "referral.redis"]
        assert len(warnings) == 1


def test_rate_limits_are_shared_between_instances(shared_settings):
    limited = shared_settings.with_overrides(rate_limit=True, rate_limit_ip="3/minute")
    with serve(limited) as first:
        for _ in range(3):
            assert first.get("/refer/getcode", params={"email": random_email()}).status_code == 404
    with serve(limited) as second:  # a fresh memory: only Redis remembers the three
        assert_problem(second.get("/refer/getcode", params={"email": random_email()}), 429)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "Redis URL must specify one of the following schemes"),
        ("redis://:hunter2-secret@127.0.0.1:99999/0", "Port out of range"),
    ],
)
def test_a_redis_url_that_cannot_work_is_a_configuration_error_that_never_shows_the_password(url, problem):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"REDIS_URL": url})
    assert str(refused.value).startswith("REDIS_URL is not a Redis URL: ")
    assert problem in str(refused.value)
    assert "hunter2" not in str(refused.value)
