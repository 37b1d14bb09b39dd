"""Which new passwords are refused, each with its reason: blank ones, invisible characters, fewer than
PASSWORD_MIN graphemes, one character repeated, the most common ones, and those naming their mailbox.

These rules are for choosing a password (sign-up, referral sign-up, password change); signing in
needs only the right one. Before the common-password and mailbox checks a password is trimmed and
folded (`fold`): NFKC, case-folded, then the UTS #39 confusables skeleton from ICU (PyICU), so that
`password` in fullwidth letters, or with a Cyrillic `a` (U+0430), counts as `password`. The common
passwords are the first COMMON_PASSWORDS of zxcvbn's frequency-ordered list, folded alike, kept as one
frozenset.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import regex

from referral.errors import InvalidField
from referral.services.mailboxes import canonical_local_part

if TYPE_CHECKING:
    import icu

COMMON_PASSWORDS = 10_000
LOCAL_PART_MIN = 3
PASSWORD_MIN = 8  # graphemes after trimming: what a person sees as characters
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})  # control and format (zero-width, bidi) characters
GRAPHEME = regex.compile(r"\X")
SKELETON_TYPE = 0  # ICU ignores it since ICU 58: UTS #39 has one skeleton

ONLY_WHITESPACE = "must not be only whitespace"
INVISIBLE = "must not contain control or invisible formatting characters (such as zero-width spaces)"
TOO_SHORT = f"must be at least {PASSWORD_MIN} characters long (a letter with its accents counts once)"
ONE_CHARACTER = "must not be one character repeated"
COMMON = "is one of the most common passwords"
NAMES_MAILBOX = "must not contain the name of your email address"


class PasswordRefused(InvalidField):
    message = "Choose another password."
    field = "password"


def check_new_password(password: str, *, email: str, field: str = "password") -> None:
    """PasswordRefused, naming `field` and the reason, unless `password` may be chosen by the owner of `email`."""
    reason = refusal(password, email=email)
    if reason is not None:
        raise PasswordRefused(field=field, reason=reason)


def refusal(password: str, *, email: str) -> str | None:
    """Why the owner of `email` may not choose `password`, or None."""
    trimmed = password.strip()
    if not trimmed:
        return ONLY_WHITESPACE
    if any(unicodedata.category(char) in INVISIBLE_CATEGORIES for char in password):
        return INVISIBLE
    if len(GRAPHEME.findall(trimmed)) < PASSWORD_MIN:
        return TOO_SHORT
    folded = fold(trimmed)
    if len(set(GRAPHEME.findall(folded))) == 1:
        return ONE_CHARACTER
    if folded in common_passwords():
        return COMMON
    local = canonical_local_part(email)
    if len(local) >= LOCAL_PART_MIN and fold(local) in folded:
        return NAMES_MAILBOX
    return None


def fold(text: str) -> str:
    """NFKC, case-folded, then the UTS #39 skeleton: what `text` looks like, for comparing."""
    return spoof_checker().getSkeleton(SKELETON_TYPE, unicodedata.normalize("NFKC", text).casefold())


@cache
def spoof_checker() -> icu.SpoofChecker:
    """ICU's checker, made by the first new password a worker checks: ICU costs a worker about 10 MiB,
    which workers that never see one (most serve getcode) do not pay. Its skeleton is thread-safe."""
    import icu

    return icu.SpoofChecker()


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """Read from the zxcvbn package's data without importing its other word lists (about 14 MB)."""
    spec = importlib.util.find_spec("zxcvbn")  # finds the package without importing it (its lists)
    if spec is None or spec.origin is None:
        raise RuntimeError("zxcvbn, a requirement of the service, is not installed")
    source = (Path(spec.origin).parent / "frequency_lists.py").read_text(encoding="utf-8")
    marker = '"passwords": "'
    start = source.find(marker)
    if start < 0:  # another layout: take the list the documented way
        from zxcvbn.frequency_lists import FREQUENCY_LISTS

        words = list(FREQUENCY_LISTS["passwords"])
    else:
        start += len(marker)
        words = source[start : source.index('"', start)].split(",", COMMON_PASSWORDS)
    return frozenset(fold(word) for word in words[:COMMON_PASSWORDS])
