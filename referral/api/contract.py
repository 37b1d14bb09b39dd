"""The API's shapes, each declared once: requests as pydantic models, answers as TypedDicts.

Validation and the OpenAPI document both come from these declarations (`referral.api.openapi`):
required lists, lengths, patterns, ranges, descriptions and examples are written here and nowhere
else (a shape's example is assembled from its fields' examples). Answers are TypedDicts, so handlers
build plain dicts that orjson serialises directly.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,  # pydantic needs this TypedDict before Python 3.12
)

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from typing_extensions import TypedDict

from referral.services.models import (
    CODE_PATTERN,
    DAY_MAX,
    DAY_MIN,
    MAX_USES_MAX,
    MAX_USES_MIN,
    AccountExport,
    CodeInfo,
    CodeUsage,
    IntegrationReferral,
    ReferralInfo,
    ReferrerStats,
)
from referral.services.passwords import PASSWORD_MIN

PASSWORD_MAX = 256
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 1000
EMAIL_MAX = 254
INT32_MAX = 2**31 - 1
EXAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiaXNzIjoicmVmZXJyYWwifQ.c2lnbmF0dXJl"  # noqa: S105


def described(description: str | None = None, example: Any = None, **constraints: Any) -> Any:
    """A field's documentation and constraints; what is not given is inherited.

    `format` and the example are for the document only (the example as OpenAPI 3.0's `example`).
    """
    schema_only = {"format": constraints.pop("format")} if "format" in constraints else {}
    if example is not None:
        schema_only["example"] = example
    if description is not None:
        constraints["description"] = description
    return Field(json_schema_extra=schema_only, **constraints)


@lru_cache(maxsize=4096)  # email_validator is slow next to a cached lookup (bench/RESULTS.md)
def normalise_email(value: str) -> str:
    """Trimmed, validated and lower-cased; raises ValueError with a readable reason (errors are not cached)."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid email address: {error}") from None
    return checked.normalized.lower()


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _any_case(word: str) -> str:
    """`test` as `[tT][eE][sS][tT]`: OpenAPI patterns are ECMA-262 regexes, with no inline flags."""
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isalpha() else re.escape(char) for char in word)


# email-validator refuses domains under RFC 6761's special-use names (`.test`, `.local`, ...) even
# without a deliverability check; the document says so with a lookahead (validation is email-validator's).
EMAIL_PATTERN = r"^(?!.*\.(?:" + "|".join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES)) + r")\.?\s*$)"
EMAIL_TEXT = (
    "Compared case-insensitively; stored trimmed and lower-cased. "
    "Domains under the special-use names of RFC 6761 (e.g. `.test`, `.local`) are refused."
)

Email = Annotated[
    StrictStr,
    Field(max_length=EMAIL_MAX, json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN}),
    described(EMAIL_TEXT, "alice@example.com"),
    AfterValidator(normalise_email),
]
NewPassword = Annotated[
    StrictStr,
    described(
        f"{PASSWORD_MIN} to {PASSWORD_MAX} characters (at least {PASSWORD_MIN} as a person sees them, after "
        "trimming), any Unicode but control and format characters; never truncated. Refused when it is one "
        "character repeated, is among the 10,000 most common (compared folded: case, width, look-alike letters) "
        "or contains the email's name.",
        "correct horse battery",
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        format="password",
    ),
    AfterValidator(_encodable),
]
AnyPassword = Annotated[
    StrictStr, described(None, "correct horse battery", min_length=1, max_length=4096, format="password")
]
Code = Annotated[
    StrictStr,
    described(
        "4 to 32 characters from A-Z, a-z, 0-9, `_` and `-`.",
        "K7QX2M9RTA",
        pattern=CODE_PATTERN,
        min_length=4,
        max_length=32,
    ),
]
Id = Annotated[StrictInt, described(None, 1, ge=1, le=INT32_MAX, format="int32")]
Count = Annotated[StrictInt, described(None, None, ge=0, le=INT32_MAX, format="int32")]
DateTime = Annotated[str, described("ISO 8601 with the UTC offset.", "2026-12-03T21:15:00+00:00", format="date-time")]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Credentials(RequestModel):
    """A new account's email and password."""

    email: Email
    password: NewPassword


class LoginCredentials(RequestModel):
    """An account's email and password. Any non-empty password may be tried: the rules are for choosing one."""

    email: Email
    password: AnyPassword


class PasswordChange(RequestModel):
    """Your current password and the new one; every token issued before stops working."""

    current_password: AnyPassword
    new_password: Annotated[NewPassword, described(example="a new and better passphrase")]


class AccountDeletion(RequestModel):
    """Your password, to confirm that the account is to be deleted."""

    password: AnyPassword


class PasswordForgotten(RequestModel):
    """The email of the account whose password was forgotten."""

    email: Email


RESET_TOKEN_MAX = 128


class PasswordReset(RequestModel):
    """The one-time token from the reset email's link, and the new password."""

    token: Annotated[
        StrictStr,
        described(
            "The `token` of the link in the reset email.",
            "Zx4oQm2v8kWb1nYt5rLh7pJc3sDa9fGe6uKi0qXw-_M",
            min_length=1,
            max_length=RESET_TOKEN_MAX,
        ),
    ]
    new_password: Annotated[NewPassword, described(example="a new and better passphrase")]


class TokenRequest(RequestModel):
    """OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3), sent as a form."""

    grant_type: Literal["password"]
    username: Annotated[Email, described("The account's email.")]
    password: AnyPassword
    scope: Annotated[str | None, described("Ignored: there are no scopes.")] = None


class CodeRequest(RequestModel):
    """How many days the code lives, and optionally a code of your own choice."""

    day: Annotated[
        StrictInt, described("The code expires this many days from now.", 30, ge=DAY_MIN, le=DAY_MAX, format="int32")
    ]
    code: Annotated[
        Code | None,
        described("A custom code; omit it (or send null) to keep the active code or get a generated one."),
    ] = None
    max_uses: Annotated[
        StrictInt | None,
        described(
            "How many referrals the code may register, then 410 `code-exhausted`; null: no limit. Omitted: an "
            "edit keeps the code's limit, a new code has none.",
            5,
            ge=MAX_USES_MIN,
            le=MAX_USES_MAX,
            format="int32",
        ),
    ] = None

    @property
    def max_uses_given(self) -> bool:
        """Whether `max_uses` was in the body (null included): absent keeps the active code's limit."""
        return "max_uses" in self.model_fields_set


class EmailLookup(RequestModel):
    """Whose active code to look up."""

    email: Email


class ReferralRegistration(RequestModel):
    """Register an email with a referral code; with a password it also becomes a user."""

    email: Annotated[Email, described(example="bob@example.com")]
    code: Code
    password: NewPassword | None = None


class ReferralListQuery(RequestModel):
    """Whose referrals to list (your own), and which page."""

    user_id: Annotated[Id, described("Your own user id.", 1)]
    limit: Annotated[Count, described("Page size.", ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    offset: Annotated[Count, described("Referrals to skip.")] = 0


class QualifyRequest(RequestModel):
    """The conversion that qualifies the referral; the body may be left out."""

    reference: Annotated[
        StrictStr | None, described("Your own reference for it: an order id, say.", "order-1042", max_length=128)
    ] = None


class IntegrationListQuery(RequestModel):
    """Which referrals to sync: after the last id you have, optionally of one status."""

    status: Annotated[
        Literal["registered", "qualified"] | None, described("Only referrals with this status.", "qualified")
    ] = None
    after_id: Annotated[Count, described("The last id of the previous page (0 for the first).")] = 0
    limit: Annotated[Count, described("Page size.", ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT


class UserId(TypedDict):
    """The new account's id."""

    user_id: Id


RESET_REQUESTED = "If an account exists for this email, a reset link is on its way."


class ResetRequested(TypedDict):
    """The same answer whether the email has an account or not."""

    detail: Annotated[str, described(None, RESET_REQUESTED)]


class AuthToken(TypedDict):
    """A token for the Authorization header."""

    token: Annotated[str, described("A JWT (HS256); send it as `Authorization: Bearer <token>`.", EXAMPLE_TOKEN)]
    user_id: Id


class OAuthToken(TypedDict):
    """RFC 6749 §5.1 access token response."""

    access_token: Annotated[str, described("A JWT (HS256).", EXAMPLE_TOKEN)]
    token_type: Literal["bearer"]
    expires_in: Annotated[int, described("Lifetime in seconds.", 86400, ge=1)]


class OAuthError(TypedDict):
    """RFC 6749 §5.2 error response."""

    error: Literal["invalid_grant", "invalid_request", "unsupported_grant_type", "slow_down"]
    error_description: NotRequired[Annotated[str, described(None, "Wrong email or password.")]]


MaxUses = Annotated[int | None, described("Referrals the code may register; null: no limit.", 5, format="int32")]
ReferralStatus = Annotated[
    Literal["registered", "qualified"], described("`qualified` once the integrator reported a conversion.")
]
QualifiedAt = Annotated[DateTime | None, described("When it qualified; null until then.")]


class CodeKey(TypedDict):
    """A referral code and its expiry (`ref_key`)."""

    user_id: Annotated[Id, described("The owner of the code.")]
    code: Annotated[str, described("The code itself.", "K7QX2M9RTA")]
    exp_date: DateTime


class ReferralCode(TypedDict):
    """A referral code, its expiry and its use limit."""

    user_id: Annotated[Id, described("The owner of the code.")]
    code: Annotated[str, described("The code itself.", "K7QX2M9RTA")]
    exp_date: DateTime
    max_uses: MaxUses


class CodeStats(TypedDict):
    """One of your codes and how it was used."""

    code: Annotated[str, described(None, "K7QX2M9RTA")]
    exp_date: DateTime
    status: Annotated[
        Literal["active", "expired", "deleted"],
        described("`deleted`: deleted, or replaced by a new custom code while it was valid."),
    ]
    uses: Annotated[Count, described("Referrals registered with it.", 3)]
    max_uses: MaxUses


class ReferrerStatsAnswer(TypedDict):
    """Your referrals in numbers, and each code you were issued, newest first."""

    referrals: Annotated[Count, described("Referrals registered with any of your codes.", 12)]
    qualified: Annotated[Count, described("Of those, the ones the integrator qualified.", 4)]
    codes: list[CodeStats]


class IntegrationReferralAnswer(TypedDict):
    """A referral, for the integrator's backend."""

    id: Annotated[Id, described("The referral's id.")]
    email: Annotated[str | None, described("Null once that person deleted their account.", "bob@example.com")]
    code: Annotated[str, described("The code it registered with.", "K7QX2M9RTA")]
    referrer_id: Annotated[Id, described("The code's owner.")]
    status: ReferralStatus
    qualified_at: QualifiedAt
    reference: Annotated[str | None, described("The reference given when it qualified.", "order-1042")]


class RegisteredReferral(TypedDict):
    """A referral just registered, with the code it used."""

    id: Annotated[Id, described("The referral's id.")]
    email: Annotated[str, described(None, "bob@example.com")]
    exp_date: Annotated[DateTime, described("The expiry of the code used.")]
    ref_key: CodeKey


class ListedReferral(TypedDict):
    """One of your referrals, with the code it registered with (deleted codes included)."""

    id: Id
    email: Annotated[str | None, described("Null once that person deleted their account.", "bob@example.com")]
    code: Annotated[str, described("The code the referral registered with.", "K7QX2M9RTA")]
    ref_key: CodeKey
    status: ReferralStatus
    qualified_at: QualifiedAt


class ExportedAccount(TypedDict):
    """The account itself."""

    user_id: Id
    email: Annotated[str, described(None, "alice@example.com")]
    created_at: DateTime


class ExportedCodeAnswer(CodeStats):
    """A code you were issued, with its uses and when it was issued."""

    created_at: DateTime


class ExportedReferralAnswer(TypedDict):
    """A referral registered with one of your codes."""

    id: Annotated[Id, described("The referral's id.")]
    email: Annotated[str | None, described("Null once that person deleted their account.", "bob@example.com")]
    code: Annotated[str, described("The code it registered with.", "K7QX2M9RTA")]
    status: ReferralStatus
    qualified_at: QualifiedAt
    created_at: DateTime


class ReferredByAnswer(TypedDict):
    """The referral you came from: the code you registered with and its owner."""

    code: Annotated[str, described(None, "K7QX2M9RTA")]
    referrer_id: Annotated[Id, described("The code's owner.")]
    registered_at: DateTime


class AccountExportAnswer(TypedDict):
    """Everything the service stores about you, but your password hash and any reset token."""

    account: ExportedAccount
    codes: Annotated[list[ExportedCodeAnswer], described("Every code you were issued, newest first.")]
    referrals: Annotated[list[ExportedReferralAnswer], described("Referrals made with your codes, oldest first.")]
    referred_by: Annotated[
        ReferredByAnswer | None,
        described(
            "Null unless you registered with someone's code.",
            {"code": "K7QX2M9RTA", "referrer_id": 2, "registered_at": "2026-12-01T10:00:00+00:00"},
        ),
    ]


class Health(TypedDict):
    """The service and its database answer."""

    status: Literal["ok"]
    database: Literal["ok"]


class Problem(TypedDict):
    """RFC 9457 problem details."""

    type: Annotated[str, described("A URN naming the problem (`urn:referral:problem:<slug>`), or `about:blank`.")]
    title: Annotated[str, described("The HTTP status phrase.")]
    status: Annotated[int, described(None, None, ge=400, le=599)]
    detail: str
    errors: NotRequired[
        Annotated[dict[str, str], described("For validation failures: each bad field and what is wrong.")]
    ]


def date_json(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def code_key_json(code: CodeInfo) -> CodeKey:
    return {"user_id": code.user_id, "code": code.code, "exp_date": date_json(code.expires_at)}


def code_json(code: CodeInfo) -> ReferralCode:
    return {**code_key_json(code), "max_uses": code.max_uses}


def registered_referral_json(referral: ReferralInfo) -> RegisteredReferral:
    ref_key = code_key_json(referral.code)
    return {"id": referral.id, "email": referral.email, "exp_date": ref_key["exp_date"], "ref_key": ref_key}


def listed_referral_json(referral: ReferralInfo) -> ListedReferral:
    return {
        "id": referral.id,
        "email": referral.email,
        "code": referral.code.code,
        "ref_key": code_key_json(referral.code),
        "status": referral.status,  # type: ignore[typeddict-item]
        "qualified_at": date_json(referral.qualified_at) if referral.qualified_at else None,
    }


def stats_json(stats: ReferrerStats) -> ReferrerStatsAnswer:
    return {
        "referrals": stats.referrals,
        "qualified": stats.qualified,
        "codes": [code_stats_json(c) for c in stats.codes],
    }


def code_stats_json(usage: CodeUsage) -> CodeStats:
    return {
        "code": usage.code,
        "exp_date": date_json(usage.expires_at),
        "status": usage.status,  # type: ignore[typeddict-item]
        "uses": usage.uses,
        "max_uses": usage.max_uses,
    }


def integration_referral_json(referral: IntegrationReferral) -> IntegrationReferralAnswer:
    return {
        "id": referral.id,
        "email": referral.email,
        "code": referral.code,
        "referrer_id": referral.referrer_id,
        "status": referral.status,  # type: ignore[typeddict-item]
        "qualified_at": date_json(referral.qualified_at) if referral.qualified_at else None,
        "reference": referral.reference,
    }


def export_json(export: AccountExport) -> AccountExportAnswer:
    came_from = export.referred_by
    return {
        "account": {"user_id": export.user_id, "email": export.email, "created_at": date_json(export.created_at)},
        "codes": [
            {**code_stats_json(code.usage), "created_at": date_json(code.created_at)}  # type: ignore[typeddict-item]
            for code in export.codes
        ],
        "referrals": [
            {
                "id": made.id,
                "email": made.email,
                "code": made.code,
                "status": made.status,  # type: ignore[typeddict-item]
                "qualified_at": date_json(made.qualified_at) if made.qualified_at else None,
                "created_at": date_json(made.created_at),
            }
            for made in export.referrals
        ],
        "referred_by": None
        if came_from is None
        else {
            "code": came_from.code,
            "referrer_id": came_from.referrer_id,
            "registered_at": date_json(came_from.registered_at),
        },
    }
