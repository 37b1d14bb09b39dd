"""Request ids and the access line: one response middleware that every answer goes through.

`X-Request-ID` from the client is kept when it is 1 to 128 characters of `[A-Za-z0-9._:-]`,
otherwise one is generated; every answer carries it (errors, 404s and 413s too), and every line
logged while the request is handled names it (`referral.logs` asks `current_request_id`).

The access line (`referral.access`, ACCESS_LOG): method, path without the query string (getcode's
holds an email), status, duration, request id, and the user id when the request was authenticated
(the route wrapper puts it in `request.ctx.user_id`). The same middleware feeds the request metrics.
It is on the hot path: no work is done that the line or the metrics do not need.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from time import perf_counter
from typing import Any

from sanic import Request
from sanic.exceptions import ServerError
from sanic.response import BaseHTTPResponse

from referral import logs

REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger(logs.ACCESS_LOGGER)


class TimedRequest(Request):
    """Sanic's Request, knowing when it began: made as soon as its headers are read (`Sanic(request_class=...)`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = perf_counter()


def request_id(request: Request) -> str:
    """The request's id: the client's `X-Request-ID` when it is acceptable, else a generated one (kept)."""
    ctx = request.ctx
    found: str | None = getattr(ctx, "request_id", None)
    if found is None:
        given = request.headers.get(REQUEST_ID_HEADER)
        found = given if given is not None and VALID_REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        ctx.request_id = found
    return found


def current_request_id() -> str | None:
    """The id of the request this task is handling (Sanic keeps the current request), if any."""
    try:
        return request_id(Request.get_current())
    except ServerError:  # outside a request
        return None


logs.set_request_id_source(current_request_id)

RequestObserver = Callable[[Request, BaseHTTPResponse, float], None]


def response_finisher(*, access: bool, observe: RequestObserver | None) -> Callable[[Request, BaseHTTPResponse], None]:
    """The response middleware: the request id on the answer, then the metrics and the access line.

    A plain function (Sanic awaits a middleware only when it returns an awaitable).
    """

    def finish_response(request: Request, response: BaseHTTPResponse) -> None:
        rid = request_id(request)
        response.headers[REQUEST_ID_HEADER] = rid
        seconds = perf_counter() - request.started if isinstance(request, TimedRequest) else 0.0
        if observe is not None:
            observe(request, response, seconds)
        if access:
            method, path, status = request.method, request.path, response.status
            user_id = getattr(request.ctx, "user_id", None)
            access_log.info(
                "%s %s %s", method, path, status, extra={"access": (method, path, status, seconds, rid, user_id)}
            )

    return finish_response
