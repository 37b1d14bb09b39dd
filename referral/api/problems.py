"""Errors as HTTP answers: one table from each error to its status, problem type and headers.

Services and the data layer raise `referral.errors.ServiceError`s that know nothing of HTTP; the
request-reading errors below are the HTTP layer's own. `ProblemErrorHandler` renders every exception
as RFC 9457 problem details (or, on the OAuth token route, as RFC 6749 §5.2 errors), and the OpenAPI
document takes each operation's error statuses, descriptions and examples from the same tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from sanic import Request, json
from sanic.exceptions import RequestCancelled, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from referral.errors import (
    DatabaseUnavailable,
    DataConflict,
    InvalidField,
    MigrationsPending,
    Overloaded,
    RateLimited,
    ServiceError,
)
from referral.logs import security_event
from referral.security import BadApiKey
from referral.services.codes import CodeTaken, NoActiveCode
from referral.services.passwords import PasswordRefused
from referral.services.referrals import (
    AlreadyReferred,
    CodeExhausted,
    CodeNotActive,
    SelfReferral,
    UnknownCode,
    UnknownReferral,
)
from referral.services.resets import InvalidResetToken
from referral.services.users import BadCredentials, EmailTaken, NotAuthenticated, WrongPassword

log = logging.getLogger("referral.errors")
T = TypeVar("T")

PROBLEM_CONTENT_TYPE = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before its answer
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="referral"'}
API_KEY_AUTHENTICATE = {"WWW-Authenticate": 'ApiKey realm="referral-integration"'}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


class MalformedRequest(ServiceError):
    message = "The request body is not valid JSON."


class InvalidInput(ServiceError):
    """Fields that break the request model; `errors` names each."""

    message = "The request has invalid fields."

    def __init__(self, errors: Mapping[str, str], message: str | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors)


class Forbidden(ServiceError):
    message = "You may only see your own data."


class InvalidOAuthRequest(ServiceError):
    message = "The token request is malformed."


class UnsupportedGrantType(ServiceError):
    message = "Only the password grant is supported."


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str
    headers: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None  # the problem's own title; the status phrase when None

    @property
    def type(self) -> str:
        return f"urn:referral:problem:{self.slug}"


PROBLEMS: dict[type[Exception], ProblemType] = {
    MalformedRequest: ProblemType(400, "malformed-request"),
    InvalidResetToken: ProblemType(400, "invalid-reset-token"),
    NotAuthenticated: ProblemType(401, "unauthorized", WWW_AUTHENTICATE),
    BadCredentials: ProblemType(401, "bad-credentials", WWW_AUTHENTICATE),
    BadApiKey: ProblemType(401, "bad-api-key", API_KEY_AUTHENTICATE),
    Forbidden: ProblemType(403, "forbidden"),
    WrongPassword: ProblemType(403, "wrong-password"),
    UnknownCode: ProblemType(404, "unknown-code"),
    NoActiveCode: ProblemType(404, "no-active-code"),
    UnknownReferral: ProblemType(404, "unknown-referral"),
    EmailTaken: ProblemType(409, "email-taken"),
    CodeTaken: ProblemType(409, "code-taken"),
    AlreadyReferred: ProblemType(409, "already-referred"),
    DataConflict: ProblemType(409, "conflict"),
    CodeNotActive: ProblemType(410, "code-not-active"),
    CodeExhausted: ProblemType(410, "code-exhausted", title="Referral code used up"),
    InvalidInput: ProblemType(422, "validation-error"),
    SelfReferral: ProblemType(422, "self-referral"),
    PasswordRefused: ProblemType(422, "password-refused"),
    InvalidField: ProblemType(422, "validation-error"),
    RateLimited: ProblemType(429, "rate-limited", {"Retry-After": "60"}),
    Overloaded: ProblemType(503, "overloaded", {"Retry-After": "1"}),
    DatabaseUnavailable: ProblemType(503, "unavailable", {"Retry-After": "1"}),
    MigrationsPending: ProblemType(503, "migrations-pending", {"Retry-After": "30"}),
}
"""Every error a client can act on: its status, its problem type and the headers its answer carries."""

OAUTH_ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidOAuthRequest: (400, "invalid_request"),
    UnsupportedGrantType: (400, "unsupported_grant_type"),
    BadCredentials: (400, "invalid_grant"),
    RateLimited: (429, "slow_down"),
}
"""How the OAuth token route (RFC 6749 §5.2) answers the errors it can meet; others stay problems."""

TOO_LARGE = "The request is too large: a body over REQUEST_MAX_SIZE, or a URL and headers over REQUEST_MAX_HEADER_SIZE."


def found_in(table: Mapping[type[Exception], T], exception: BaseException) -> T | None:
    """The entry of the exception's class in `table`, or of the nearest base class that has one."""
    return next((table[cls] for cls in type(exception).__mro__ if cls in table), None)  # type: ignore[index]


def problem_type(exception: BaseException) -> ProblemType | None:
    return found_in(PROBLEMS, exception)


def problem_body(
    status: int, detail: str, *, slug: str = "", errors: Mapping[str, str] | None = None, title: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:referral:problem:{slug}" if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = dict(errors)
    return body


def _answer_headers(found: ProblemType, exception: BaseException) -> dict[str, str]:
    headers = dict(found.headers)
    if isinstance(exception, RateLimited):
        headers["Retry-After"] = str(exception.retry_after)
    return headers


class ProblemErrorHandler(ErrorHandler):
    """Turns every exception into problem details: never a traceback, never an HTML page."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, RequestCancelled):  # the client hung up: nothing failed, nobody will read this
            return HTTPResponse(status=CLIENT_CLOSED_REQUEST)
        operation = getattr(request.route.ctx, "operation", None) if request.route is not None else None
        oauth = found_in(OAUTH_ERRORS, exception) if operation is not None and operation.oauth_errors else None
        if oauth is not None:
            status, error = oauth
            headers = {**NOSNIFF, **NO_STORE}
            if isinstance(exception, RateLimited):
                headers["Retry-After"] = str(exception.retry_after)
            return json({"error": error, "error_description": str(exception)}, status=status, headers=headers)
        found = problem_type(exception)
        if found is not None:
            if found.status == 403:
                security_event(
                    "forbidden", reason=found.slug, path=request.path, user_id=getattr(request.ctx, "user_id", None)
                )
            if isinstance(exception, DataConflict):
                log.warning("constraint violation on %s %s: %r", request.method, request.path, exception.__cause__)
            elif isinstance(exception, DatabaseUnavailable):
                log.error("database unavailable on %s %s: %r", request.method, request.path, exception.__cause__)
            return self._problem(
                found.status,
                str(exception),
                slug=found.slug,
                errors=getattr(exception, "errors", None),
                headers=_answer_headers(found, exception),
                title=found.title,
            )
        if isinstance(exception, SanicException):
            if exception.status_code >= 500:
                self.log(request, exception)
            return self._problem(exception.status_code, _sanic_detail(exception), headers=exception.headers)
        self.log(request, exception)
        return self._problem(500, "An unexpected error occurred.")

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """The error with its traceback, and the method and path only: the query string may hold an email.

        Sanic's quiet errors (a server being killed: ServerKilled) are not logged, as Sanic's own handler
        does, unless NOISY_EXCEPTIONS.
        """
        if getattr(exception, "quiet", False) and not request.app.config.get("NOISY_EXCEPTIONS", False):
            return
        log.error("unexpected error on %s %s", request.method, request.path, exc_info=exception)

    @staticmethod
    def _problem(
        status: int,
        detail: str,
        *,
        slug: str = "",
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
    ) -> HTTPResponse:
        body = problem_body(status, detail, slug=slug, errors=errors, title=title)
        return json(body, status=status, headers={**NOSNIFF, **(headers or {})}, content_type=PROBLEM_CONTENT_TYPE)


def _sanic_detail(exception: SanicException) -> str:
    status = exception.status_code
    if status == 404:
        return "No such resource."
    if status == 405:
        return "This method is not allowed here."
    if status == 413:  # Sanic answers 413 for an oversized request line or headers too, not only a body
        return "The request headers are too large." if "header" in str(exception) else "The request body is too large."
    if status == 400:
        return "The request could not be parsed."
    return str(exception) or HTTPStatus(status).phrase
