"""What the services hand back to the routes, and the rules of a code's fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

CODE_PATTERN = r"^[A-Za-z0-9_-]{4,32}$"
DAY_MIN, DAY_MAX = 1, 365  # a code lives this many days from its last update
ID_MAX = 2**31 - 1  # ids are INTEGER columns
MAX_USES_MIN, MAX_USES_MAX = 1, 1_000_000  # a code's use limit; null: none


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """A code as the database row holds it. The annotations are pydantic's rules for reading one from
    elsewhere (`referral.cache` validates its Redis entries against them); a row is taken as it is."""

    user_id: Annotated[int, Field(ge=1, le=ID_MAX)]
    code: Annotated[str, Field(max_length=32, pattern=CODE_PATTERN)]
    expires_at: AwareDatetime
    max_uses: Annotated[int | None, Field(ge=MAX_USES_MIN, le=MAX_USES_MAX)] = None


@dataclass(frozen=True, slots=True)
class ReferralInfo:
    id: int
    email: str | None  # null once that person deleted their account (never on a registration's answer)
    code: CodeInfo
    status: str = "registered"
    qualified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IntegrationReferral:
    """A referral as the integrator sees it (`/integration/*`)."""

    id: int
    email: str | None  # null once that person deleted their account
    code: str
    referrer_id: int
    status: str
    qualified_at: datetime | None
    reference: str | None


@dataclass(frozen=True, slots=True)
class CodeUsage:
    code: str
    expires_at: datetime
    status: str  # "active", "expired" or "deleted"
    uses: int
    max_uses: int | None


@dataclass(frozen=True, slots=True)
class ReferrerStats:
    referrals: int
    qualified: int
    codes: list[CodeUsage]


@dataclass(frozen=True, slots=True)
class ReferralPage:
    items: list[ReferralInfo]
    total: int


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: int
    token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class ExportedCode:
    usage: CodeUsage
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ExportedReferral:
    id: int
    email: str | None  # null once that person deleted their account
    code: str
    status: str
    qualified_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReferredBy:
    code: str
    referrer_id: int
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class AccountExport:
    """Everything stored about one account (GDPR articles 15 and 20), but its password hash and reset token."""

    user_id: int
    email: str
    created_at: datetime
    codes: list[ExportedCode]
    referrals: list[ExportedReferral]
    referred_by: ReferredBy | None
