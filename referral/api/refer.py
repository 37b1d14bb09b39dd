"""/refer: the authenticated user's own code and numbers, and looking a code up by its owner's email."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.contract import (
    CodeRequest,
    EmailLookup,
    ReferralCode,
    ReferrerStatsAnswer,
    code_json,
    stats_json,
)
from referral.api.routing import Answer, answer, operation, services
from referral.services.codes import KEEP, CodeTaken, NoActiveCode

bp = Blueprint("refer", url_prefix="/refer")


@operation(
    bp,
    "POST|PUT",
    "/update_code",
    summary="Issue or extend your referral code",
    answers=(
        Answer(201, ReferralCode, "A new code was issued."),
        Answer(200, ReferralCode, "Your active code was extended (and renamed, given `code`)."),
    ),
    user_limit=True,
    errors=(CodeTaken,),
)
async def update_code(request: Request, user_id: int, body: CodeRequest) -> HTTPResponse:
    """Give your code `day` more days from now: 200 when you had an active code, 201 when a new one was issued.

    With `code`, that string becomes your code (409 when anyone ever used it); without it the active
    code keeps its string, or a short unguessable one is generated. `max_uses` caps the referrals the
    code may register (null: no limit; omitted: an edit keeps the limit, a new code has none); a new
    custom code on an edit carries the limit over and counts its own uses. POST and PUT do the same.
    """
    max_uses = body.max_uses if body.max_uses_given else KEEP
    code, created = await services(request).codes.issue_or_edit(
        user_id, days=body.day, custom_code=body.code, max_uses=max_uses
    )
    return answer(code_json(code), status=201 if created else 200)


@operation(
    bp,
    "DELETE|POST",
    "/delete",
    summary="Delete your active referral code",
    answers=Answer(200, ReferralCode, "The deleted code."),
    user_limit=True,
    errors=(NoActiveCode,),
)
async def delete_code(request: Request, user_id: int) -> HTTPResponse:
    """Delete your active code; 404 when you have none.

    Referrals registered with it keep showing it, and the string is never issued again. DELETE and
    POST do the same.
    """
    return answer(code_json(await services(request).codes.delete(user_id)))


@operation(
    bp,
    "GET|POST",
    "/getcode",
    summary="Look up a user's active code",
    answers=Answer(200, ReferralCode, "The owner's active code."),
    limit="getcode",
    errors=(NoActiveCode,),
)
async def getcode(request: Request, body: EmailLookup) -> HTTPResponse:
    """The active referral code of the user with this email; 404 when there is no such user or no active code.

    No authentication: a referrer shares their email, a newcomer looks the code up.
    """
    return answer(code_json(await services(request).codes.find_by_email(body.email)))


@operation(
    bp,
    "GET",
    "/stats",
    summary="Your referral numbers",
    answers=Answer(200, ReferrerStatsAnswer),
)
async def get_stats(request: Request, user_id: int) -> HTTPResponse:
    """How many referrals your codes registered and how many qualified, and each code you were issued
    (newest first) with its status, uses and limit. Kept as counters: as fast at 100,000 referrals as at 10.
    """
    return answer(stats_json(await services(request).referrals.stats_for(user_id)))
