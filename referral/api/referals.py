"""/referals: registering with a code, and a referrer's list (the seed's spelling of the path)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext.extensions.openapi.types import Integer

from referral.api.auth import current_user
from referral.api.requests import json_body, limited_per_ip, query_or_body, services
from referral.api.shapes import json_response, listed_referral_json, registered_referral_json
from referral.errors import Forbidden
from referral.openapi import (
    EXAMPLE_CODE,
    EXAMPLE_CODE_OBJECT,
    EXAMPLE_EXP_DATE,
    EXAMPLE_REFERRAL_EMAIL,
    INT32_MAX,
    Body,
    Doc,
    Query,
    documented,
    problem,
    ref,
    success,
)
from referral.schemas import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, ReferralListQuery, ReferralRegistration, validated

bp = Blueprint("referals", url_prefix="/referals")

LIST_RESPONSES = {
    200: success(
        "Your referrals, oldest first, one page of them.",
        {"type": "array", "items": ref("ListedReferral")},
        [{"id": 1, "email": EXAMPLE_REFERRAL_EMAIL, "code": EXAMPLE_CODE, "ref_key": EXAMPLE_CODE_OBJECT}],
        headers={
            "X-Total-Count": {
                "description": "How many referrals there are in all, across pages.",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    ),
    403: problem(403, "`user_id` is someone else's.", "You may only list your own referrals."),
}
LIST_ERRORS = (401, 413, 422, 503)


@bp.post("/register")
@documented(
    Doc(
        summary="Register with a referral code",
        tag="referals",
        body=Body(
            "ReferralRegistration",
            {"email": EXAMPLE_REFERRAL_EMAIL, "code": EXAMPLE_CODE, "password": "another good password"},
        ),
        responses={
            201: success(
                "Registered as a referral of the code's owner.",
                ref("RegisteredReferral"),
                {
                    "id": 1,
                    "email": EXAMPLE_REFERRAL_EMAIL,
                    "exp_date": EXAMPLE_EXP_DATE,
                    "ref_key": EXAMPLE_CODE_OBJECT,
                },
            ),
            404: problem(404, "No code like this was ever issued.", "No referral code like this exists."),
            409: problem(
                409,
                "The email is already a referral (or, with a password, already a user).",
                "This email is already registered as a referral.",
            ),
            422: problem(422, "Invalid fields, or your own code (self-referral)."),
        },
        errors=(400, 410, 413, 429, 503),
    ),
    operation_id="register_referral",
)
@limited_per_ip("referals/register")
async def register(request: Request) -> HTTPResponse:
    """Register an email as a referral of the code's owner. With `password` it also becomes a user who can sign in.

    The code must be active: 404 for a code never issued, 410 for an expired or deleted one.
    `exp_date` is the expiry of the code used.
    """
    body = validated(ReferralRegistration, json_body(request))
    referral = await services(request).referrals.register(email=body.email, code=body.code, password=body.password)
    return json_response(registered_referral_json(referral), status=201)


@bp.post("/list", name="list_referrals_post")
@documented(
    Doc(
        summary="List your referrals (JSON body)",
        tag="referals",
        secured=True,
        body=Body("ReferralListQuery", {"user_id": 1, "limit": LIST_LIMIT_DEFAULT, "offset": 0}),
        responses=LIST_RESPONSES,
        errors=(400, *LIST_ERRORS),
    ),
    operation_id="list_referrals_post",
)
@bp.get("/list", ignore_body=False)
@documented(
    Doc(
        summary="List your referrals",
        tag="referals",
        secured=True,
        query=(
            Query(
                "user_id",
                Integer(minimum=1, maximum=INT32_MAX, example=1),
                required=True,
                description="Your own user id.",
            ),
            Query(
                "limit",
                Integer(minimum=1, maximum=LIST_LIMIT_MAX, default=LIST_LIMIT_DEFAULT),
                description="Page size.",
            ),
            Query("offset", Integer(minimum=0, maximum=INT32_MAX, default=0), description="Referrals to skip."),
        ),
        responses=LIST_RESPONSES,
        errors=LIST_ERRORS,
    ),
    operation_id="list_referrals",
)
async def list_referrals(request: Request) -> HTTPResponse:
    """The referrals registered with any of your codes, oldest first, with `X-Total-Count`.

    `user_id` must be your own (403 otherwise); page with `limit` (1 to 1000) and `offset`.
    """
    user = await current_user(request)
    query = validated(ReferralListQuery, query_or_body(request, ("user_id", "limit", "offset")))
    if query.user_id != user.id:
        raise Forbidden("You may only list your own referrals.")
    page = await services(request).referrals.list_for(user.id, limit=query.limit, offset=query.offset)
    return json_response(
        [listed_referral_json(item) for item in page.items],
        headers={"X-Total-Count": str(page.total)},
    )
