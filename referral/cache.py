"""The code cache: an active code by its owner's email, for `GET /refer/getcode`.

In process (cachetools TTLCache, bounded). Entries live at most CODE_CACHE_TTL seconds and are never
served past the code's own expiry. Writes invalidate their entry; other workers see a change within
CODE_CACHE_TTL. Referral registration never reads it.
"""

from __future__ import annotations

from cachetools import TTLCache

from referral.db.tables import utcnow
from referral.services.models import CodeInfo


class CodeCache:
    def __init__(self, *, ttl: int, maxsize: int = 10_000) -> None:
        self.enabled = ttl > 0
        self._entries: TTLCache[str, CodeInfo] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1))
        self._invalidations = 0

    def get(self, email: str) -> CodeInfo | None:
        if not self.enabled:
            return None
        entry = self._entries.get(email)
        if entry is not None and entry.expires_at <= utcnow():
            self._entries.pop(email, None)
            return None
        return entry

    def fill_ticket(self) -> int:
        """Take before reading the database; `put` with it drops a value a write may have outdated."""
        return self._invalidations

    def put(self, email: str, entry: CodeInfo, *, ticket: int) -> None:
        if self.enabled and ticket == self._invalidations:
            self._entries[email] = entry

    def invalidate(self, email: str) -> None:
        self._invalidations += 1
        self._entries.pop(email, None)

    def clear(self) -> None:
        self._invalidations += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
