"""Which new passwords are refused: blank ones, the most common ones, and those naming their mailbox.

These rules are for choosing a password (sign-up, referral sign-up, password change); signing in
needs only the right one. The common passwords are the first COMMON_PASSWORDS of zxcvbn's
frequency-ordered list, kept as one frozenset of lower-cased strings.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from functools import lru_cache
from pathlib import Path

from referral.errors import InvalidField
from referral.services.mailboxes import canonical_local_part

COMMON_PASSWORDS = 10_000
LOCAL_PART_MIN = 3


class PasswordRefused(InvalidField):
    message = "Choose another password."
    field = "password"


def check_new_password(password: str, *, email: str, field: str = "password") -> None:
    """PasswordRefused, naming `field`, unless `password` may be chosen by the owner of `email`."""
    if not password.strip():
        raise PasswordRefused(field=field, reason="must not be only whitespace")
    folded = unicodedata.normalize("NFKC", password).casefold()  # fullwidth "ｐａｓｓｗｏｒｄ" is "password"
    if folded in common_passwords():
        raise PasswordRefused(field=field, reason="is one of the most common passwords")
    local = canonical_local_part(email)
    if len(local) >= LOCAL_PART_MIN and local in folded:
        raise PasswordRefused(field=field, reason="must not contain the name of your email address")


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
    return frozenset(word.casefold() for word in words[:COMMON_PASSWORDS])
