"""/integration: the integrator's backend (never an end user) qualifies referrals and syncs them, with an
`X-API-Key` from INTEGRATION_KEYS."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.contract import (
    INT32_MAX,
    IntegrationListQuery,
    IntegrationReferralAnswer,
    QualifyRequest,
    integration_referral_json,
)
from referral.api.routing import Answer, answer, operation, services
from referral.services.referrals import UnknownReferral

bp = Blueprint("integration", url_prefix="/integration")


@operation(
    bp,
    "POST",
    "/referrals/<referral_id:int>/qualify",
    summary="Qualify a referral (a conversion)",
    answers=Answer(200, IntegrationReferralAnswer, "The referral, qualified now or before."),
    limit="integration",
    no_store=True,
    errors=(UnknownReferral,),
)
async def qualify_referral(
    request: Request, integration_caller: str, referral_id: int, body: QualifyRequest
) -> HTTPResponse:
    """Mark the referral `qualified`: the referred person did what your programme rewards (bought, say).

    Idempotent: calling again answers the same `qualified_at` and `reference` as the first call, and
    `referral.qualified` is sent once. The body (`reference`, up to 128 characters) may be left out.
    """
    if not 1 <= referral_id <= INT32_MAX:
        raise UnknownReferral()
    referral = await services(request).referrals.qualify(referral_id, reference=body.reference)
    return answer(integration_referral_json(referral))


@operation(
    bp,
    "GET",
    "/referrals",
    summary="Every user's referrals, for syncing",
    answers=Answer(200, list[IntegrationReferralAnswer], "One page, oldest first: the next starts after its last id."),
    limit="integration",
    no_store=True,
)
async def list_all_referrals(request: Request, integration_caller: str, body: IntegrationListQuery) -> HTTPResponse:
    """Every user's referrals, oldest first, `limit` at a time (1 to 1000, default 100), optionally of one
    `status`. Keyset pagination: pass the last `id` you got as `after_id`; rows inserted meanwhile never
    make a page repeat or skip one.
    """
    page = await services(request).referrals.list_all(after_id=body.after_id, limit=body.limit, status=body.status)
    return answer([integration_referral_json(referral) for referral in page])
