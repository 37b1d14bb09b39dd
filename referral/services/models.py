"""What the services hand back to the routes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CodeInfo:
    user_id: int
    code: str
    expires_at: datetime


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
