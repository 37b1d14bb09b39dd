"""/health: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.contract import Health
from referral.api.routing import Answer, answer, operation, services

bp = Blueprint("health")


@operation(bp, "GET", "/health", summary="Health check", answers=Answer(200, Health), head=True)
async def health(request: Request) -> HTTPResponse:
    """200 when the database answers a trivial query, 503 when it does not. For load balancers and probes."""
    await services(request).db.ping()
    return answer({"status": "ok", "database": "ok"})
