"""The code cache on its own: TTL, expiry of the code itself, invalidation, bounded size."""

from __future__ import annotations

from datetime import timedelta

from referral.cache import CodeCache
from referral.clock import utcnow
from referral.services.models import CodeInfo


def code(expires_in: timedelta = timedelta(days=1), name: str = "CODE-1") -> CodeInfo:
    return CodeInfo(1, name, utcnow() + expires_in)


def test_serves_what_was_put():
    cache = CodeCache(ttl=60)
    entry = code()
    cache.put("a@example.com", entry, ticket=cache.fill_ticket())
    assert cache.get("a@example.com") == entry


def test_never_serves_a_code_past_its_expiry():
    cache = CodeCache(ttl=60)
    cache.put("a@example.com", code(expires_in=timedelta(seconds=-1)), ticket=cache.fill_ticket())
    assert cache.get("a@example.com") is None
    assert len(cache) == 0


def test_entries_expire_after_the_ttl():
    cache = CodeCache(ttl=60)
    cache.put("a@example.com", code(), ticket=cache.fill_ticket())
    cache._entries.expire(time=cache._entries.timer() + 61)
    assert cache.get("a@example.com") is None


def test_drop_forgets_the_entry():
    cache = CodeCache(ttl=60)
    cache.put("a@example.com", code(), ticket=cache.fill_ticket())
    cache.drop("a@example.com")
    assert cache.get("a@example.com") is None


def test_a_read_that_raced_a_write_is_not_cached():
    cache = CodeCache(ttl=60)
    ticket = cache.fill_ticket()  # a lookup starts reading the database...
    cache.drop("a@example.com")  # ...a write lands meanwhile...
    cache.put("a@example.com", code(name="STALE"), ticket=ticket)  # ...so its (old) answer is dropped
    assert cache.get("a@example.com") is None


def test_ttl_zero_disables_the_cache():
    cache = CodeCache(ttl=0)
    cache.put("a@example.com", code(), ticket=cache.fill_ticket())
    assert cache.get("a@example.com") is None


def test_size_is_bounded():
    cache = CodeCache(ttl=60, maxsize=10)
    for number in range(100):
        cache.put(f"u{number}@example.com", code(), ticket=cache.fill_ticket())
    assert len(cache) == 10
