"""/referals: registering with a code, and a referrer's list (the seed's spelling of the path)."""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from referral.api.auth import CurrentUser
from referral.api.requests import json_body, limited_per_ip, query_or_body
from referral.api.shapes import listed_referral_json, registered_referral_json
from referral.errors import Forbidden
from referral.schemas import ReferralListQuery, ReferralRegistration, validated
from referral.services.referrals import ReferralService

bp = Blueprint("referals", url_prefix="/referals")


@bp.post("/register")
@limited_per_ip("referals/register")
async def register(request: Request, referrals: ReferralService) -> HTTPResponse:
    body = validated(ReferralRegistration, json_body(request))
    referral = await referrals.register(email=body.email, code=body.code, password=body.password)
    return json(registered_referral_json(referral), status=201)


@bp.route("/list", methods=["GET", "POST"], ignore_body=False)
async def list_referrals(request: Request, user: CurrentUser, referrals: ReferralService) -> HTTPResponse:
    query = validated(ReferralListQuery, query_or_body(request, ("user_id", "limit", "offset")))
    if query.user_id != user.id:
        raise Forbidden("You may only list your own referrals.")
    page = await referrals.list_for(user.id, limit=query.limit, offset=query.offset)
    return json(
        [listed_referral_json(item) for item in page.items],
        headers={"X-Total-Count": str(page.total)},
    )
