"""The API's shapes, each declared once: requests as pydantic models, answers as TypedDicts.

Validation and the OpenAPI document both come from these declarations (`referral.api.openapi`):
required lists, lengths, patterns, ranges, descriptions and examples are written here and nowhere
else. Answers are TypedDicts so handlers build plain dicts that orjson serialises directly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import (
    Annotated,
    Literal,
    NotRequired,  # pydantic needs this TypedDict before Python 3.12
)

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, with_config
from typing_extensions import TypedDict

from referral.services.models import CodeInfo, ReferralInfo

PASSWORD_MIN, PASSWORD_MAX = 8, 256
LOGIN_PASSWORD_MAX = 4096
DAY_MIN, DAY_MAX = 1, 365
CODE_PATTERN = r"^[A-Za-z0-9_-]{4,32}$"
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 1000
EMAIL_MAX = 254
INT32_MAX = 2**31 - 1

EXAMPLE_EMAIL = "alice@example.com"
EXAMPLE_REFERRAL_EMAIL = "bob@example.com"
EXAMPLE_PASSWORD = "correct horse battery"  # noqa: S105 - documentation example
EXAMPLE_CODE = "K7QX2M9RTA"
EXAMPLE_EXP_DATE = "2026-12-03T21:15:00+00:00"
EXAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiaXNzIjoicmVmZXJyYWwifQ.c2lnbmF0dXJl"  # noqa: S105
EXAMPLE_CODE_OBJECT = {"user_id": 1, "code": EXAMPLE_CODE, "exp_date": EXAMPLE_EXP_DATE}


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

Email = Annotated[
    StrictStr,
    Field(
        max_length=EMAIL_MAX,
        description="Compared case-insensitively; stored trimmed and lower-cased. Domains under the "
        "special-use names of RFC 6761 (e.g. `.test`, `.local`) are refused.",
        examples=[EXAMPLE_EMAIL],
        json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN},
    ),
    AfterValidator(normalise_email),
]
NewPassword = Annotated[
    StrictStr,
    Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters, any Unicode; never truncated.",
        examples=[EXAMPLE_PASSWORD],
        json_schema_extra={"format": "password"},
    ),
    AfterValidator(_encodable),
]
Code = Annotated[
    StrictStr,
    Field(
        pattern=CODE_PATTERN,
        min_length=4,
        max_length=32,
        description="4 to 32 characters from A-Z, a-z, 0-9, `_` and `-`.",
        examples=[EXAMPLE_CODE],
    ),
]
Id = Annotated[int, Field(ge=1, le=INT32_MAX, json_schema_extra={"format": "int32"})]
DateTime = Annotated[
    str,
    Field(
        description="ISO 8601 with the UTC offset.",
        examples=[EXAMPLE_EXP_DATE],
        json_schema_extra={"format": "date-time"},
    ),
]


# ------------------------------------------------------------------------------------------- #
# Requests
# ------------------------------------------------------------------------------------------- #


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Credentials(RequestModel):
    """A new account's email and password."""

    model_config = ConfigDict(json_schema_extra={"example": {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}})

    email: Email
    password: NewPassword


class LoginCredentials(RequestModel):
    """An account's email and password. Any non-empty password may be tried: the rules are for choosing one."""

    model_config = ConfigDict(json_schema_extra={"example": {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}})

    email: Email
    password: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=LOGIN_PASSWORD_MAX,
            examples=[EXAMPLE_PASSWORD],
            json_schema_extra={"format": "password"},
        ),
    ]


class TokenRequest(RequestModel):
    """OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3), sent as a form."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"grant_type": "password", "username": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}
        }
    )

    grant_type: Literal["password"]
    username: Annotated[
        StrictStr,
        Field(min_length=1, max_length=EMAIL_MAX, description="The account's email.", examples=[EXAMPLE_EMAIL]),
    ]
    password: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=LOGIN_PASSWORD_MAX,
            examples=[EXAMPLE_PASSWORD],
            json_schema_extra={"format": "password"},
        ),
    ]
    scope: Annotated[str | None, Field(description="Ignored: there are no scopes.")] = None


class CodeRequest(RequestModel):
    """How many days the code lives, and optionally a code of your own choice."""

    model_config = ConfigDict(json_schema_extra={"example": {"day": 30}})

    day: Annotated[
        StrictInt,
        Field(
            ge=DAY_MIN,
            le=DAY_MAX,
            description="The code expires this many days from now.",
            examples=[30],
            json_schema_extra={"format": "int32"},
        ),
    ]
    code: Annotated[
        Code | None,
        Field(description="A custom code; omit it (or send null) to keep the active code or get a generated one."),
    ] = None


class EmailLookup(RequestModel):
    """Whose active code to look up."""

    model_config = ConfigDict(json_schema_extra={"example": {"email": EXAMPLE_EMAIL}})

    email: Email


class ReferralRegistration(RequestModel):
    """Register an email with a referral code; with a password it also becomes a user."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"email": EXAMPLE_REFERRAL_EMAIL, "code": EXAMPLE_CODE, "password": "another good password"}
        }
    )

    email: Annotated[Email, Field(examples=[EXAMPLE_REFERRAL_EMAIL])]
    code: Code
    password: NewPassword | None = None


class ReferralListQuery(RequestModel):
    """Whose referrals to list (your own), and which page."""

    model_config = ConfigDict(json_schema_extra={"example": {"user_id": 1, "limit": LIST_LIMIT_DEFAULT, "offset": 0}})

    user_id: Annotated[
        StrictInt,
        Field(ge=1, le=INT32_MAX, description="Your own user id.", examples=[1], json_schema_extra={"format": "int32"}),
    ]
    limit: Annotated[
        StrictInt,
        Field(ge=1, le=LIST_LIMIT_MAX, description="Page size.", json_schema_extra={"format": "int32"}),
    ] = LIST_LIMIT_DEFAULT
    offset: Annotated[
        StrictInt,
        Field(ge=0, le=INT32_MAX, description="Referrals to skip.", json_schema_extra={"format": "int32"}),
    ] = 0


# ------------------------------------------------------------------------------------------- #
# Answers
# ------------------------------------------------------------------------------------------- #


@with_config(ConfigDict(json_schema_extra={"example": {"user_id": 1}}))
class UserId(TypedDict):
    """The new account's id."""

    user_id: Id


@with_config(ConfigDict(json_schema_extra={"example": {"token": EXAMPLE_TOKEN, "user_id": 1}}))
class AuthToken(TypedDict):
    """A token for the Authorization header."""

    token: Annotated[str, Field(description="A JWT (HS256); send it as `Authorization: Bearer <token>`.")]
    user_id: Id


@with_config(
    ConfigDict(
        json_schema_extra={"example": {"access_token": EXAMPLE_TOKEN, "token_type": "bearer", "expires_in": 86400}}
    )
)
class OAuthToken(TypedDict):
    """RFC 6749 §5.1 access token response."""

    access_token: Annotated[str, Field(description="A JWT (HS256).")]
    token_type: Literal["bearer"]
    expires_in: Annotated[int, Field(ge=1, description="Lifetime in seconds.")]


OAuthErrorCode = Literal["invalid_request", "invalid_grant", "unsupported_grant_type", "slow_down"]


@with_config(
    ConfigDict(
        json_schema_extra={"example": {"error": "invalid_grant", "error_description": "Wrong email or password."}}
    )
)
class OAuthError(TypedDict):
    """RFC 6749 §5.2 error response."""

    error: OAuthErrorCode
    error_description: NotRequired[str]


@with_config(ConfigDict(json_schema_extra={"example": EXAMPLE_CODE_OBJECT}))
class ReferralCode(TypedDict):
    """A referral code and its expiry."""

    user_id: Annotated[Id, Field(description="The owner of the code.")]
    code: Annotated[str, Field(description="The code itself.", examples=[EXAMPLE_CODE])]
    exp_date: DateTime


@with_config(
    ConfigDict(
        json_schema_extra={
            "example": {
                "id": 1,
                "email": EXAMPLE_REFERRAL_EMAIL,
                "exp_date": EXAMPLE_EXP_DATE,
                "ref_key": EXAMPLE_CODE_OBJECT,
            }
        }
    )
)
class RegisteredReferral(TypedDict):
    """A referral just registered, with the code it used."""

    id: Annotated[Id, Field(description="The referral's id.")]
    email: Annotated[str, Field(examples=[EXAMPLE_REFERRAL_EMAIL])]
    exp_date: Annotated[DateTime, Field(description="The expiry of the code used.")]
    ref_key: ReferralCode


@with_config(
    ConfigDict(
        json_schema_extra={
            "example": {"id": 1, "email": EXAMPLE_REFERRAL_EMAIL, "code": EXAMPLE_CODE, "ref_key": EXAMPLE_CODE_OBJECT}
        }
    )
)
class ListedReferral(TypedDict):
    """One of your referrals, with the code it registered with (deleted codes included)."""

    id: Id
    email: Annotated[str, Field(examples=[EXAMPLE_REFERRAL_EMAIL])]
    code: Annotated[str, Field(description="The code the referral registered with.")]
    ref_key: ReferralCode


def code_json(code: CodeInfo) -> ReferralCode:
    return {"user_id": code.user_id, "code": code.code, "exp_date": code.expires_at.isoformat(timespec="seconds")}


def registered_referral_json(referral: ReferralInfo) -> RegisteredReferral:
    ref_key = code_json(referral.code)
    return {"id": referral.id, "email": referral.email, "exp_date": ref_key["exp_date"], "ref_key": ref_key}


def listed_referral_json(referral: ReferralInfo) -> ListedReferral:
    return {"id": referral.id, "email": referral.email, "code": referral.code.code, "ref_key": code_json(referral.code)}


@with_config(ConfigDict(json_schema_extra={"example": {"status": "ok", "database": "ok"}}))
class Health(TypedDict):
    """The service and its database answer."""

    status: Literal["ok"]
    database: Literal["ok"]


@with_config(
    ConfigDict(
        json_schema_extra={
            "example": {
                "type": "urn:referral:problem:not-found",
                "title": "Not Found",
                "status": 404,
                "detail": "Not found.",
            }
        }
    )
)
class Problem(TypedDict):
    """RFC 9457 problem details."""

    type: Annotated[
        str,
        Field(
            description="A URN naming the problem (`urn:referral:problem:<slug>`), or `about:blank`.",
            examples=["urn:referral:problem:not-found"],
        ),
    ]
    title: Annotated[str, Field(description="The HTTP status phrase.", examples=["Not Found"])]
    status: Annotated[int, Field(ge=400, le=599, examples=[404])]
    detail: Annotated[str, Field(examples=["Not found."])]
    errors: NotRequired[
        Annotated[
            dict[str, str],
            Field(
                description="For validation failures: each bad field and what is wrong with it.",
                examples=[{"day": "Input should be less than or equal to 365"}],
            ),
        ]
    ]
