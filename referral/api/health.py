"""/health: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

import sqlalchemy as sa
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from referral.db.database import ReferralDatabase
from referral.errors import ServiceUnavailable

bp = Blueprint("health")


@bp.get("/health")
async def health(request: Request, db: ReferralDatabase) -> HTTPResponse:
    try:
        await db.fetch_val(sa.text("SELECT 1"))
    except Exception as error:
        raise ServiceUnavailable() from error
    return json({"status": "ok", "database": "ok"})
