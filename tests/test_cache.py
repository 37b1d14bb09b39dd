"""The code cache on its own, in process: TTL, expiry of the code itself, invalidation, bounded size.
(In Redis: tests/test_redis.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from referral.cache import CodeCache
from referral.services.models import CodeInfo
from tests.factories import code_info as code

EMAIL = "a@example.com"


async def fill(cache: CodeCache, entry: CodeInfo, email: str = EMAIL) -> None:
    """A lookup's fill: take the ticket, then store the answer."""
    await cache.put(email, entry, ticket=await cache.fill_ticket(email))


async def test_serves_what_was_put():
    cache = CodeCache(ttl=60)
    entry = code()
    await fill(cache, entry)
    assert await cache.get(EMAIL) == entry


async def test_never_serves_a_code_past_its_expiry():
    cache = CodeCache(ttl=60)
    await fill(cache, code(expires_in=timedelta(seconds=-1)))
    assert await cache.get(EMAIL) is None
    assert len(cache) == 0


async def expire_after_the_ttl(cache: CodeCache) -> None:
    cache._entries.expire(time=cache._entries.timer() + 61)


async def clear(cache: CodeCache) -> None:
    cache.clear()


@pytest.mark.parametrize(
    "forget", [expire_after_the_ttl, lambda cache: cache.invalidate(EMAIL), clear], ids=["ttl", "invalidate", "clear"]
)
async def test_entries_expire_after_the_ttl_and_invalidate_and_clear_forget_them(forget):
    cache = CodeCache(ttl=60)
    await fill(cache, code())
    await forget(cache)
    assert await cache.get(EMAIL) is None


async def test_a_read_that_raced_a_write_is_not_cached():
    cache = CodeCache(ttl=60)
    ticket = await cache.fill_ticket(EMAIL)  # a lookup starts reading the database...
    await cache.invalidate(EMAIL)  # ...a write lands meanwhile...
    await cache.put(EMAIL, code(name="STALE"), ticket=ticket)  # ...so its (old) answer is dropped
    assert await cache.get(EMAIL) is None


async def test_ttl_zero_disables_the_cache():
    cache = CodeCache(ttl=0)
    await fill(cache, code())
    assert await cache.get(EMAIL) is None


async def test_size_is_bounded():
    cache = CodeCache(ttl=60, maxsize=10)
    for number in range(100):
        await fill(cache, code(), email=f"u{number}@example.com")
    assert len(cache) == 10
