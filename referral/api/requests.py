"""Reading requests: the app's services, JSON bodies, query parameters, the client's address, per-IP rate limits."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from sanic import Request
from sanic.response import HTTPResponse

from referral.errors import MalformedRequest

if TYPE_CHECKING:
    from referral.app import AppContext

Handler = Callable[..., Awaitable[HTTPResponse]]


def services(request: Request) -> AppContext:
    """The app's long-lived objects (`referral.app.AppContext`): `services(request).codes`."""
    return request.app.ctx


def json_body(request: Request) -> Any:
    """The parsed JSON body, None when there is none; 400 when it is not JSON."""
    if not request.body:
        return None
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError):
        raise MalformedRequest() from None


def query_or_body(request: Request, names: tuple[str, ...]) -> Any:
    """Parameters from the query string when any is there, otherwise from the JSON body."""
    args = query_args(request)
    found = {name: _query_value(args[name]) for name in names if name in args}
    if found:
        return found
    body = json_body(request)
    return {} if body is None else body


def query_args(request: Request) -> dict[str, str]:
    """The query's parameters, the first value of each, as Sanic's `request.args` reads them.

    A query of one `name=value` with nothing to decode (no `&`, `%` or `+`), as in every getcode, is
    split here: urllib's `parse_qs` would give the same answer in several times the time.
    """
    query = request.query_string
    if "&" in query or "%" in query or "+" in query:
        return {name: values[0] for name, values in request.args.items()}
    name, _, value = query.partition("=")
    return {name: value} if value else {}  # blank values are dropped, as parse_qs drops them


def _query_value(raw: str) -> Any:
    """Query values are text: whole numbers become ints so the same model checks both forms."""
    if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 19:
        return int(raw)
    return raw


def client_ip(request: Request) -> str:
    """The client's address: the proxy-reported one when Sanic's proxy settings allow it."""
    return request.remote_addr or request.ip or "unknown"


def limited_per_ip(scope: str) -> Callable[[Handler], Handler]:
    """Count the request against RATE_LIMIT_IP for its client address before anything else."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def limited(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            rate_limits = services(request).rate_limits
            if rate_limits.enabled:  # RATE_LIMIT=off: not even the client's address is worked out
                await rate_limits.hit_ip(client_ip(request), scope)
            return await handler(request, *args, **kwargs)

        return limited

    return decorate
