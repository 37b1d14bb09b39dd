"""The OpenAPI document: schemas, examples, problem responses, security schemes, and `documented`.

sanic-ext builds `/docs/openapi.json` from decorators, but left alone it writes no `required` lists
for model bodies, a bare `default` response, and one shared operation for a handler served under
several methods. So the schemas here are written out as JSON Schema (from the same constants as the
request models in `referral.schemas`), and `documented` gives every (path, method) its own
operation with its request body or query parameters, every status it answers, and its security.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import update_wrapper
from http import HTTPStatus
from types import FunctionType
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from sanic import Sanic
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder
from sanic_ext.extensions.openapi.extension import OpenAPIExtension
from sanic_ext.extensions.openapi.types import Schema

from referral.errors import (
    PROBLEM_CONTENT_TYPE,
    Conflict,
    Forbidden,
    MalformedRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from referral.schemas import (
    CODE_PATTERN,
    DAY_MAX,
    DAY_MIN,
    EMAIL_MAX,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
)
from referral.services.referrals import CodeNotActive

Handler = Callable[..., Awaitable[Any]]

API_VERSION = "1.0.0"
INT32_MAX = 2**31 - 1
BEARER = "BearerAuth"
OAUTH2 = "OAuth2Password"
TOKEN_URL = "/user/token"  # noqa: S105 - a path, not a secret
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

TAGS = {
    "user": "Sign up and sign in: a JWT from `/user/auth`, or an OAuth 2.0 token from `/user/token`.",
    "refer": "Your own referral code: issue, extend, rename, delete; and look up anyone's active code by email.",
    "referals": "Register with a referral code, and list the referrals that used your codes.",
    "health": "Liveness of the service and its database.",
}

# --------------------------------------------------------------------------------------------- #
# Examples
# --------------------------------------------------------------------------------------------- #

EXAMPLE_EMAIL = "alice@example.com"
EXAMPLE_REFERRAL_EMAIL = "bob@example.com"
EXAMPLE_PASSWORD = "correct horse battery"  # noqa: S105 - documentation example
EXAMPLE_CODE = "K7QX2M9RTA"
EXAMPLE_EXP_DATE = "2026-12-03T21:15:00+00:00"
EXAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiaXNzIjoicmVmZXJyYWwifQ.c2lnbmF0dXJl"  # noqa: S105
EXAMPLE_CODE_OBJECT = {"user_id": 1, "code": EXAMPLE_CODE, "exp_date": EXAMPLE_EXP_DATE}

# --------------------------------------------------------------------------------------------- #
# Schemas (components/schemas)
# --------------------------------------------------------------------------------------------- #


def _any_case(word: str) -> str:
    """`test` as `[tT][eE][sS][tT]`: OpenAPI patterns are ECMA-262 regexes, with no inline flags."""
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isalpha() else re.escape(char) for char in word)


# email-validator refuses domains under the special-use names of RFC 6761 (`.test`, `.local`, ...)
# even without a deliverability check: a pattern says so, as a lookahead over the whole address.
EMAIL_PATTERN = r"^(?!.*\.(?:" + "|".join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES)) + r")\.?\s*$)"
_EMAIL = {
    "type": "string",
    "format": "email",
    "maxLength": EMAIL_MAX,
    "pattern": EMAIL_PATTERN,
    "description": (
        "Compared case-insensitively; stored trimmed and lower-cased. "
        "Domains under the special-use names of RFC 6761 (e.g. `.test`, `.local`) are refused."
    ),
    "example": EXAMPLE_EMAIL,
}
_NEW_PASSWORD = {
    "type": "string",
    "format": "password",
    "minLength": PASSWORD_MIN,
    "maxLength": PASSWORD_MAX,
    "description": f"{PASSWORD_MIN} to {PASSWORD_MAX} characters, any Unicode; never truncated.",
    "example": EXAMPLE_PASSWORD,
}
_CODE = {
    "type": "string",
    "pattern": CODE_PATTERN,
    "minLength": 4,
    "maxLength": 32,
    "description": "4 to 32 characters from A-Z, a-z, 0-9, `_` and `-`.",
    "example": EXAMPLE_CODE,
}
_ID = {"type": "integer", "format": "int32", "minimum": 1, "maximum": INT32_MAX}
_DATE = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 with the UTC offset.",
    "example": EXAMPLE_EXP_DATE,
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Credentials": {
        "type": "object",
        "description": "A new account's email and password.",
        "required": ["email", "password"],
        "properties": {"email": _EMAIL, "password": _NEW_PASSWORD},
    },
    "LoginCredentials": {
        "type": "object",
        "description": "An account's email and password. Any non-empty password may be tried.",
        "required": ["email", "password"],
        "properties": {
            "email": _EMAIL,
            "password": {
                "type": "string",
                "format": "password",
                "minLength": 1,
                "maxLength": 4096,
                "example": EXAMPLE_PASSWORD,
            },
        },
    },
    "TokenRequest": {
        "type": "object",
        "description": "OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3).",
        "required": ["grant_type", "username", "password"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["password"], "example": "password"},
            "username": {
                "type": "string",
                "minLength": 1,
                "description": "The account's email.",
                "example": EXAMPLE_EMAIL,
            },
            "password": {"type": "string", "format": "password", "minLength": 1, "example": EXAMPLE_PASSWORD},
            "scope": {"type": "string", "description": "Ignored: there are no scopes."},
        },
    },
    "CodeRequest": {
        "type": "object",
        "description": "How many days the code lives, and optionally a code of your own choice.",
        "required": ["day"],
        "properties": {
            "day": {
                "type": "integer",
                "format": "int32",
                "minimum": DAY_MIN,
                "maximum": DAY_MAX,
                "description": "The code expires this many days from now.",
                "example": 30,
            },
            "code": {
                **_CODE,
                "nullable": True,
                "description": "A custom code; omit it (or send null) to keep the active code or get a generated one.",
            },
        },
    },
    "EmailLookup": {
        "type": "object",
        "required": ["email"],
        "properties": {"email": _EMAIL},
    },
    "ReferralRegistration": {
        "type": "object",
        "description": "Register an email with a referral code; with a password it also becomes a user.",
        "required": ["email", "code"],
        "properties": {
            "email": {**_EMAIL, "example": EXAMPLE_REFERRAL_EMAIL},
            "code": _CODE,
            "password": {**_NEW_PASSWORD, "nullable": True},
        },
    },
    "ReferralListQuery": {
        "type": "object",
        "required": ["user_id"],
        "properties": {
            "user_id": {**_ID, "description": "Your own user id.", "example": 1},
            "limit": {
                "type": "integer",
                "format": "int32",
                "minimum": 1,
                "maximum": LIST_LIMIT_MAX,
                "default": LIST_LIMIT_DEFAULT,
            },
            "offset": {"type": "integer", "format": "int32", "minimum": 0, "maximum": INT32_MAX, "default": 0},
        },
    },
    "UserId": {
        "type": "object",
        "required": ["user_id"],
        "properties": {"user_id": {**_ID, "example": 1}},
    },
    "AuthToken": {
        "type": "object",
        "required": ["token", "user_id"],
        "properties": {
            "token": {"type": "string", "description": "A JWT (HS256); send it as `Authorization: Bearer <token>`."},
            "user_id": _ID,
        },
    },
    "OAuthToken": {
        "type": "object",
        "description": "RFC 6749 §5.1 access token response.",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "A JWT (HS256)."},
            "token_type": {"type": "string", "enum": ["bearer"]},
            "expires_in": {"type": "integer", "minimum": 1, "description": "Lifetime in seconds."},
        },
    },
    "OAuthError": {
        "type": "object",
        "description": "RFC 6749 §5.2 error response.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "string",
                "enum": ["invalid_request", "invalid_grant", "unsupported_grant_type", "slow_down"],
            },
            "error_description": {"type": "string"},
        },
    },
    "ReferralCode": {
        "type": "object",
        "required": ["user_id", "code", "exp_date"],
        "properties": {
            "user_id": {**_ID, "description": "The owner of the code."},
            "code": {"type": "string", "description": "The code itself.", "example": EXAMPLE_CODE},
            "exp_date": _DATE,
        },
    },
    "RegisteredReferral": {
        "type": "object",
        "required": ["id", "email", "exp_date", "ref_key"],
        "properties": {
            "id": {**_ID, "description": "The referral's id."},
            "email": {"type": "string", "example": EXAMPLE_REFERRAL_EMAIL},
            "exp_date": {**_DATE, "description": "The expiry of the code used."},
            "ref_key": ref("ReferralCode"),
        },
    },
    "ListedReferral": {
        "type": "object",
        "required": ["id", "email", "code", "ref_key"],
        "properties": {
            "id": _ID,
            "email": {"type": "string", "example": EXAMPLE_REFERRAL_EMAIL},
            "code": {"type": "string", "description": "The code the referral registered with."},
            "ref_key": ref("ReferralCode"),
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "database"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "database": {"type": "string", "enum": ["ok"]}},
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {
                "type": "string",
                "description": "A URN naming the problem (`urn:referral:problem:<slug>`), or `about:blank`.",
                "example": "urn:referral:problem:not-found",
            },
            "title": {"type": "string", "description": "The HTTP status phrase.", "example": "Not Found"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599, "example": 404},
            "detail": {"type": "string", "example": "Not found."},
            "errors": {
                "type": "object",
                "description": "For validation failures: each bad field and what is wrong with it.",
                "additionalProperties": {"type": "string"},
                "example": {"day": "Input should be less than or equal to 365"},
            },
        },
    },
}

# --------------------------------------------------------------------------------------------- #
# Responses
# --------------------------------------------------------------------------------------------- #

_RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}}

PROBLEMS: dict[int, tuple[str, str, str]] = {
    # status: (description, problem slug, example detail); slugs and details come from the errors raised
    400: ("The body is not valid JSON.", MalformedRequest.problem, MalformedRequest.message),
    401: ("No token, or an invalid, expired or orphaned one.", Unauthorized.problem, Unauthorized.message),
    403: (
        "The token is valid but the data is someone else's.",
        Forbidden.problem,
        "You may only list your own referrals.",
    ),
    404: ("Nothing like this exists.", NotFound.problem, NotFound.message),
    409: ("The request conflicts with existing data.", Conflict.problem, Conflict.message),
    410: ("The code has expired or was deleted.", CodeNotActive.problem, CodeNotActive.message),
    413: (
        "The request is too large: a body over REQUEST_MAX_SIZE, or a URL and headers over REQUEST_MAX_HEADER_SIZE.",
        "",
        "The request body is too large.",
    ),
    422: ("Some fields are invalid; `errors` names each.", ValidationFailed.problem, ValidationFailed.message),
    429: ("Too many requests from this client: slow down.", TooManyRequests.problem, TooManyRequests.message),
    503: (
        "The database is unavailable; the service recovers by itself.",
        ServiceUnavailable.problem,
        ServiceUnavailable.message,
    ),
}
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`, with the realm.", "schema": {"type": "string"}}},
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}


def problem(status: int, description: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """A response object for an error status, with an RFC 9457 body and example."""
    default_description, slug, default_detail = PROBLEMS[status]
    example: dict[str, Any] = {
        "type": f"urn:referral:problem:{slug}" if slug else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or default_detail,
    }
    if status == 422:
        example["errors"] = {"email": "is not a valid email address"}
    answer: dict[str, Any] = {
        "description": description or default_description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": ref("Problem"), "example": example}},
    }
    if status in _PROBLEM_HEADERS:
        answer["headers"] = _PROBLEM_HEADERS[status]
    return answer


def success(
    description: str,
    schema: Mapping[str, Any],
    example: Any,
    *,
    headers: Mapping[str, Any] | None = None,
    content_type: str = JSON,
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {content_type: {"schema": dict(schema), "example": example}},
    }
    if headers:
        answer["headers"] = dict(headers)
    return answer


# --------------------------------------------------------------------------------------------- #
# Operations
# --------------------------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Query:
    """A query parameter, documented with sanic-ext's typed schema classes (a dict schema is mangled)."""

    name: str
    schema: Schema
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Body:
    schema_name: str
    example: Any
    content_type: str = JSON
    description: str = ""


@dataclass(frozen=True)
class Doc:
    """What the spec says about one operation, apart from its method and id."""

    summary: str
    tag: str
    responses: Mapping[int, Mapping[str, Any]]
    errors: Iterable[int] = ()
    body: Body | None = None
    query: tuple[Query, ...] = field(default_factory=tuple)
    secured: bool = False
    description: str | None = None


def documented(doc: Doc, *, operation_id: str) -> Callable[[Handler], Handler]:
    """Document one operation of `handler`, on a distinct function object of its own.

    sanic-ext keys documentation by handler function, so a handler served under two methods would
    share one operation (and one operationId). Each `documented` therefore returns a copy of the
    handler: a new function object over the same code, so a request pays for no extra call. Register
    it for exactly one method. The handler's docstring is the description.
    """

    def decorate(handler: Handler) -> Handler:
        operation = _copy_function(handler)
        description = doc.description or inspect.getdoc(handler) or doc.summary
        openapi.operation(operation_id)(operation)
        openapi.summary(doc.summary)(operation)
        openapi.description(description)(operation)
        openapi.tag(doc.tag)(operation)
        openapi.no_autodoc(operation)
        for query in doc.query:
            openapi.parameter(
                query.name, query.schema, "query", required=query.required, description=query.description or None
            )(operation)
        if doc.secured:
            openapi.secured(BEARER)(operation)
            openapi.secured(OAUTH2)(operation)
        builder = OperationStore()[operation]
        if doc.body is not None:
            builder.body(
                {doc.body.content_type: {"schema": ref(doc.body.schema_name), "example": doc.body.example}},
                required=True,
                description=doc.body.description or None,
            )
        responses: dict[str, Any] = {str(status): dict(answer) for status, answer in doc.responses.items()}
        for status in doc.errors:
            responses.setdefault(str(status), problem(status))
        builder.responses.update(responses)
        return operation

    return decorate


def _copy_function(function: Handler) -> Handler:
    """A distinct function object running `function`'s own code, with its name, docstring and attributes."""
    copy = FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    return update_wrapper(copy, function)


# --------------------------------------------------------------------------------------------- #
# The document as a whole
# --------------------------------------------------------------------------------------------- #

DESCRIPTION = """\
Sign up, get an expiring referral code, share it, and see who registered with it.

**Authentication.** Protected operations take a JWT in `Authorization: Bearer <token>` (or, as the
original API had it, `authorization: <token>`). Get one from `POST /user/auth` (JSON) or
`POST /user/token` (the OAuth 2.0 password grant, which Swagger UI's **Authorize** button uses).

**Errors** are RFC 9457 problem details (`application/problem+json`): `type`, `title`, `status`,
`detail`, and for validation failures `errors` naming each bad field. `/user/token` answers errors
as RFC 6749 §5.2 says (`error`, `error_description`).

**Dates** are ISO 8601 with the UTC offset, e.g. `2026-12-03T21:15:00+00:00`.
"""


def configure_openapi(app: Sanic, *, title: str) -> None:
    """Load sanic-ext and describe the API, its tags, schemas and security schemes (before any `app.ext`).

    Of sanic-ext's extensions only OpenAPI (this document) and HTTP (which applies sanic.cfg's
    HTTP_AUTO_* and CORS settings) are loaded. The injection extension dispatches a signal after
    routing on every request to resolve each handler's dependencies (Sanic skips dispatching events
    nobody listens to); without it cached getcode went from 0.40x to 0.55x of bare Sanic's
    throughput (bench/RESULTS.md). Handlers take their services from `app.ctx` (`services(request)`)
    and the current user from `current_user(request)` instead. Templating (Jinja) is unused.
    """
    from referral.api.docs import configure_docs_ui

    configure_docs_ui(app, title=title)
    app.extend(built_in_extensions=False, extensions=[OpenAPIExtension, HTTPExtension])
    app.ext.openapi.describe(title, version=API_VERSION, description=DESCRIPTION)
    for extension in app.ext.extensions:
        if extension.name == "openapi":
            # Its startup log line links `openapi.index`, a route of its own UIs, which are off here.
            extension.label = lambda: ""  # type: ignore[method-assign]
    spec = SpecificationBuilder()
    for name, text in TAGS.items():
        spec.tag(name, text)
    for name, schema in SCHEMAS.items():
        spec.add_component("schemas", name, schema)
    app.ext.openapi.add_security_scheme(
        BEARER,
        "http",
        scheme="bearer",
        bearer_format="JWT",
        description="A JWT from `/user/auth` or `/user/token`, sent as `Authorization: Bearer <token>`.",
    )
    app.ext.openapi.add_security_scheme(
        OAUTH2,
        "oauth2",
        description="OAuth 2.0 password grant: Swagger UI's Authorize button trades an email and password for a token.",
        flows={"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
    )
