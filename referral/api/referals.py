"""/referals: registering with a code, and a referrer's list (the seed's spelling of the path)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.contract import (
    ListedReferral,
    ReferralListQuery,
    ReferralRegistration,
    RegisteredReferral,
    listed_referral_json,
    registered_referral_json,
)
from referral.api.problems import Forbidden
from referral.api.routing import Answer, answer, client_ip, operation, services
from referral.errors import Overloaded
from referral.services.passwords import PasswordRefused
from referral.services.referrals import AlreadyReferred, CodeExhausted, CodeNotActive, SelfReferral, UnknownCode
from referral.services.users import EmailTaken

bp = Blueprint("referals", url_prefix="/referals")


@operation(
    bp,
    "POST",
    "/register",
    summary="Register with a referral code",
    answers=Answer(201, RegisteredReferral, "Registered as a referral of the code's owner."),
    limit="referals/register",
    no_store=True,
    errors=(
        UnknownCode,
        CodeNotActive,
        CodeExhausted,
        AlreadyReferred,
        EmailTaken,
        SelfReferral,
        PasswordRefused,
        Overloaded,
    ),
)
async def register_referral(request: Request, body: ReferralRegistration) -> HTTPResponse:
    """Register an email as a referral of the code's owner. With `password` it also becomes a user who can sign in.

    One referral per mailbox: `Bob+x@example.com` and `bob@example.com` are the same inbox (so are
    dotted gmail.com addresses), and no mailbox of the code's owner may use the code.
    The code must be active: 404 for a code never issued, 410 for an expired or deleted one, or one
    used up (`code-exhausted`: it registered its `max_uses`).
    `exp_date` is the expiry of the code used.
    """
    referral = await services(request).referrals.register(
        email=body.email, code=body.code, password=body.password, client=client_ip(request)
    )
    return answer(registered_referral_json(referral), status=201)


@operation(
    bp,
    "GET|POST",
    "/list",
    summary="List your referrals",
    answers=Answer(
        200,
        list[ListedReferral],
        "Your referrals, oldest first, one page of them.",
        headers={"X-Total-Count": "How many referrals there are in all, across pages."},
    ),
    no_store=True,
    errors=(Forbidden,),
)
async def list_referrals(request: Request, user_id: int, body: ReferralListQuery) -> HTTPResponse:
    """The referrals registered with any of your codes, oldest first, with `X-Total-Count`, each with its
    `status` (`qualified` once the integrator reported a conversion) and `qualified_at`.

    `user_id` must be your own (403 otherwise); page with `limit` (1 to 1000) and `offset`.
    """
    if body.user_id != user_id:
        raise Forbidden("You may only list your own referrals.")
    page = await services(request).referrals.list_for(user_id, limit=body.limit, offset=body.offset)
    return answer([listed_referral_json(item) for item in page.items], headers={"X-Total-Count": str(page.total)})
