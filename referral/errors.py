"""API errors and the handler that renders every error as RFC 9457 problem details."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from sanic import Request, json
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from referral.db.database import INTEGRITY_ERRORS, UNAVAILABLE_ERRORS

log = logging.getLogger("referral.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(SanicException):
    """An error the client can act on. `problem` names its RFC 9457 `type` (a URN slug)."""

    status_code = 400
    problem = ""
    quiet = True

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=dict(headers or {}))
        self.errors = dict(errors) if errors else None


class MalformedRequest(ApiError):
    status_code = 400
    problem = "malformed-request"
    message = "The request body is not valid JSON."


class Unauthorized(ApiError):
    status_code = 401
    problem = "unauthorized"
    message = "Authentication is required: send a valid token in the Authorization header."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="referral"'})


class BadCredentials(Unauthorized):
    problem = "bad-credentials"
    message = "Wrong email or password."


class Forbidden(ApiError):
    status_code = 403
    problem = "forbidden"
    message = "You may only see your own data."


class NotFound(ApiError):
    status_code = 404
    problem = "not-found"
    message = "Not found."


class Conflict(ApiError):
    status_code = 409
    problem = "conflict"
    message = "The request conflicts with existing data."


class Gone(ApiError):
    status_code = 410
    problem = "gone"
    message = "The resource is no longer available."


class ValidationFailed(ApiError):
    status_code = 422
    problem = "validation-error"
    message = "The request has invalid fields."


class TooManyRequests(ApiError):
    status_code = 429
    problem = "rate-limited"
    message = "Too many requests: slow down."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ApiError):
    status_code = 503
    problem = "unavailable"
    message = "The database is unavailable; try again shortly."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def problem_response(
    status: int,
    detail: str,
    *,
    problem: str = "",
    errors: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTTPResponse:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": f"urn:referral:problem:{problem}" if problem else "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = dict(errors)
    return json(body, status=status, headers=dict(headers or {}), content_type=PROBLEM_CONTENT_TYPE)


class ProblemErrorHandler(ErrorHandler):
    """Turns every exception into problem details: never a traceback, never an HTML page."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, ApiError):
            return problem_response(
                exception.status_code,
                str(exception),
                problem=exception.problem,
                errors=exception.errors,
                headers=exception.headers,
            )
        if isinstance(exception, SanicException):
            status = exception.status_code
            if status >= 500:
                self.log(request, exception)
            return problem_response(status, _sanic_detail(exception), headers=exception.headers)
        if isinstance(exception, INTEGRITY_ERRORS):
            log.warning("constraint violation on %s %s: %s", request.method, request.path, exception)
            return problem_response(409, Conflict.message, problem=Conflict.problem)
        if isinstance(exception, UNAVAILABLE_ERRORS):
            log.error("database unavailable on %s %s: %r", request.method, request.path, exception)
            unavailable = ServiceUnavailable()
            return problem_response(503, str(unavailable), problem=unavailable.problem, headers=unavailable.headers)
        self.log(request, exception)
        return problem_response(500, "An unexpected error occurred.")


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
