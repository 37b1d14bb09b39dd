"""/metrics: Prometheus' text format, for the internal network (METRICS; METRICS_TOKEN guards it).

Not part of the API's OpenAPI document: it is an operator's endpoint, in Prometheus' format rather
than the API's JSON, and the public document should not advertise it. Registered only with METRICS=on.
"""

from __future__ import annotations

import hmac

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral import metrics
from referral.api.problems import NO_STORE, NOSNIFF
from referral.api.routing import client_ip, services
from referral.logs import security_event
from referral.services.users import NotAuthenticated

bp = Blueprint("metrics")
ROUTE_NAME = "referral.metrics.metrics"


@bp.get("/metrics", name="metrics")
async def metrics_endpoint(request: Request) -> HTTPResponse:
    """Every worker's metrics; with METRICS_TOKEN, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = services(request).settings.metrics_token
    if expected is not None and not _token_matches(request.headers.get("authorization"), expected):
        security_event("metrics_token_refused", client=client_ip(request))
        raise NotAuthenticated("The metrics need a token: send `Authorization: Bearer <METRICS_TOKEN>`.")
    body = metrics.exposition(request.app)
    return HTTPResponse(body, headers={**NOSNIFF, **NO_STORE}, content_type=metrics.CONTENT_TYPE)


def _token_matches(header: str | None, expected: str) -> bool:
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = given.strip()
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
