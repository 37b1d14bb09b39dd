"""/refer: the authenticated user's own code, and looking a code up by its owner's email."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext.extensions.openapi.types import Email

from referral.api.auth import current_user
from referral.api.requests import json_body, limited_per_ip, query_or_body, services
from referral.api.shapes import code_json, json_response
from referral.openapi import (
    EMAIL_PATTERN,
    EXAMPLE_CODE_OBJECT,
    EXAMPLE_EMAIL,
    Body,
    Doc,
    Query,
    documented,
    ref,
    success,
)
from referral.schemas import EMAIL_MAX, CodeRequest, EmailLookup, validated

bp = Blueprint("refer", url_prefix="/refer")

# Each (path, method) is its own documented operation: see referral.openapi.documented.
UPDATE_CODE = Doc(
    summary="Issue or extend your referral code",
    tag="refer",
    secured=True,
    body=Body("CodeRequest", {"day": 30}),
    responses={
        201: success("A new code was issued.", ref("ReferralCode"), EXAMPLE_CODE_OBJECT),
        200: success(
            "Your active code was extended (and renamed, given `code`).", ref("ReferralCode"), EXAMPLE_CODE_OBJECT
        ),
    },
    errors=(400, 401, 409, 413, 422, 503),
)
DELETE_CODE = Doc(
    summary="Delete your active referral code",
    tag="refer",
    secured=True,
    responses={200: success("The deleted code.", ref("ReferralCode"), EXAMPLE_CODE_OBJECT)},
    errors=(401, 404, 413, 503),
)
GETCODE_RESPONSES = {200: success("The owner's active code.", ref("ReferralCode"), EXAMPLE_CODE_OBJECT)}
GETCODE_ERRORS = (404, 413, 422, 429, 503)


@bp.put("/update_code", name="update_code_put")
@documented(UPDATE_CODE, operation_id="update_code_put")
@bp.post("/update_code")
@documented(UPDATE_CODE, operation_id="update_code")
async def update_code(request: Request) -> HTTPResponse:
    """Give your code `day` more days from now: 200 when you had an active code, 201 when a new one was issued.

    With `code`, that string becomes your code (409 when anyone ever used it); without it the active
    code keeps its string, or a short unguessable one is generated. POST and PUT do the same.
    """
    user = await current_user(request)
    body = validated(CodeRequest, json_body(request))
    code, created = await services(request).codes.issue_or_edit(user.id, days=body.day, custom_code=body.code)
    return json_response(code_json(code), status=201 if created else 200)


@bp.post("/delete", name="delete_post")
@documented(DELETE_CODE, operation_id="delete_code_post")
@bp.delete("/delete")
@documented(DELETE_CODE, operation_id="delete_code")
async def delete(request: Request) -> HTTPResponse:
    """Delete your active code; 404 when you have none.

    Referrals registered with it keep showing it, and the string is never issued again. DELETE and
    POST do the same.
    """
    user = await current_user(request)
    return json_response(code_json(await services(request).codes.delete(user.id)))


@bp.post("/getcode", name="getcode_post")
@documented(
    Doc(
        summary="Look up a user's active code (JSON body)",
        tag="refer",
        body=Body("EmailLookup", {"email": EXAMPLE_EMAIL}),
        responses=GETCODE_RESPONSES,
        errors=(400, *GETCODE_ERRORS),
    ),
    operation_id="getcode_post",
)
@bp.get("/getcode", ignore_body=False)
@documented(
    Doc(
        summary="Look up a user's active code",
        tag="refer",
        query=(
            Query(
                "email",
                Email(maxLength=EMAIL_MAX, pattern=EMAIL_PATTERN, example=EXAMPLE_EMAIL),
                required=True,
                description="The code owner's email (case-insensitive).",
            ),
        ),
        responses=GETCODE_RESPONSES,
        errors=GETCODE_ERRORS,
    ),
    operation_id="getcode",
)
@limited_per_ip("getcode")
async def getcode(request: Request) -> HTTPResponse:
    """The active referral code of the user with this email; 404 when there is no such user or no active code.

    No authentication: a referrer shares their email, a newcomer looks the code up.
    """
    lookup = validated(EmailLookup, query_or_body(request, ("email",)))
    return json_response(code_json(await services(request).codes.find_by_email(lookup.email)))
