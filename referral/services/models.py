"""What the services hand back to the routes, and the rules of a code's fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AwareDatetime, Field

CODE_PATTERN = r"^[A-Za-z0-9_-]{4,32}$"
DAY_MIN, DAY_MAX = 1, 365  # a code lives this many days from its last update
ID_MAX = 2**31 - 1  # ids are INTEGER columns


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """A code as the database row holds it. The annotations are pydantic's rules for reading one from
    elsewhere (`referral.cache` validates its Redis entries against them); a row is taken as it is."""

    user_id: Annotated[int, Field(ge=1, le=ID_MAX)]
    code: Annotated[str, Field(max_length=32, pattern=CODE_PATTERN)]
    expires_at: AwareDatetime


@dataclass(frozen=True, slots=True)
class ReferralInfo:
    id: int
    email: str
    code: CodeInfo


@dataclass(frozen=True, slots=True)
class ReferralPage:
    items: list[ReferralInfo]
    total: int


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: int
    token: str
    expires_in: int
