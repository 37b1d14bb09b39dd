"""The code cache on its own, in process: TTL, expiry of the code itself, invalidation, bounded size.
(In Redis: tests/test_redis.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from referral.cache import CodeCache
from referral.services.models import CodeInfo
from tests.factories import code_info as code

EMAIL = "a@example.com"


def fill(cache: CodeCache, entry: CodeInfo, email: str = EMAIL) -> None:
    async def lookup_and_store() -> None:
        await cache.put(email, entry, ticket=await cache.fill_ticket(email))

    asyncio.run(lookup_and_store())


def get(cache: CodeCache, email: str = EMAIL) -> CodeInfo | None:
    return asyncio.run(cache.get(email))


def test_serves_what_was_put():
    cache = CodeCache(ttl=60)
    entry = code()
    fill(cache, entry)
    assert get(cache) == entry


def test_never_serves_a_code_past_its_expiry():
    cache = CodeCache(ttl=60)
    fill(cache, code(expires_in=timedelta(seconds=-1)))
    assert get(cache) is None
    assert len(cache) == 0


def test_entries_expire_after_the_ttl():
    cache = CodeCache(ttl=60)
    fill(cache, code())
    cache._entries.expire(time=cache._entries.timer() + 61)
    assert get(cache) is None


def test_invalidate_forgets_the_entry():
    cache = CodeCache(ttl=60)
    fill(cache, code())
    asyncio.run(cache.invalidate(EMAIL))
    assert get(cache) is None


def test_clear_forgets_everything():
    cache = CodeCache(ttl=60)
    fill(cache, code())
    cache.clear()
    assert get(cache) is None


def test_a_read_that_raced_a_write_is_not_cached():
    cache = CodeCache(ttl=60)

    async def race() -> None:
        ticket = await cache.fill_ticket(EMAIL)  # a lookup starts reading the database...
        await cache.invalidate(EMAIL)  # ...a write lands meanwhile...
        await cache.put(EMAIL, code(name="STALE"), ticket=ticket)  # ...so its (old) answer is dropped

    asyncio.run(race())
    assert get(cache) is None


def test_ttl_zero_disables_the_cache():
    cache = CodeCache(ttl=0)
    fill(cache, code())
    assert get(cache) is None


def test_size_is_bounded():
    cache = CodeCache(ttl=60, maxsize=10)
    for number in range(100):
        fill(cache, code(), email=f"u{number}@example.com")
    assert len(cache) == 10
