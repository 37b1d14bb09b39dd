"""/health: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

import sqlalchemy as sa
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.requests import services
from referral.api.shapes import json_response
from referral.errors import ServiceUnavailable
from referral.openapi import Doc, documented, problem, ref, success

bp = Blueprint("health")


@bp.get("/health")
@documented(
    Doc(
        summary="Health check",
        tag="health",
        responses={
            200: success("The service and its database answer.", ref("Health"), {"status": "ok", "database": "ok"}),
            503: problem(503),
        },
        errors=(413,),
    ),
    operation_id="health",
)
async def health(request: Request) -> HTTPResponse:
    """200 when the database answers a trivial query, 503 when it does not. For load balancers and probes."""
    try:
        await services(request).db.fetch_val(sa.text("SELECT 1"))
    except Exception as error:
        raise ServiceUnavailable() from error
    return json_response({"status": "ok", "database": "ok"})
