"""Canonical mailboxes: the addresses that deliver to the same inbox compare equal.

Split at the last `@`; the local part NFKC-normalised and case-folded with its `+tag` dropped, dots
dropped for gmail.com, and googlemail.com read as gmail.com. Used where one person must not count
twice: self-referral, "already a referral", and passwords that contain the mailbox's name.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

GMAIL = "gmail.com"
DOMAIN_ALIASES = {"googlemail.com": GMAIL}


def canonical_local_part(email: str) -> str:
    local, _, domain = email.rpartition("@")
    local = unicodedata.normalize("NFKC", local).casefold().partition("+")[0]
    if _canonical_domain(domain) == GMAIL:
        local = local.replace(".", "")
    return local


def canonical_mailbox(email: str) -> str:
    return f"{canonical_local_part(email)}@{_canonical_domain(email.rpartition('@')[2])}"


ERASED_MAILBOX_CONTEXT = b"referral erased mailbox\x00"


def erased_mailbox_key(mailbox: str, secret_key: str) -> str:
    """What is kept of a deleted account's mailbox: an HMAC under a key derived from SECRET_KEY, so that
    the mailbox cannot be referred again, and nobody without the key can test an address against it."""
    key = hashlib.sha256(ERASED_MAILBOX_CONTEXT + secret_key.encode()).digest()
    return hmac.new(key, mailbox.encode(), hashlib.sha256).hexdigest()


def _canonical_domain(domain: str) -> str:
    domain = unicodedata.normalize("NFKC", domain).casefold()
    return DOMAIN_ALIASES.get(domain, domain)
