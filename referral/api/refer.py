"""/refer: the authenticated user's own code, and looking a code up by its owner's email."""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from referral.api.auth import CurrentUser
from referral.api.requests import json_body, limited_per_ip, query_or_body
from referral.api.shapes import code_json
from referral.schemas import CodeRequest, EmailLookup, validated
from referral.services.codes import CodeService

bp = Blueprint("refer", url_prefix="/refer")


@bp.route("/update_code", methods=["POST", "PUT"])
async def update_code(request: Request, user: CurrentUser, codes: CodeService) -> HTTPResponse:
    body = validated(CodeRequest, json_body(request))
    code, created = await codes.issue_or_edit(user.id, days=body.day, custom_code=body.code)
    return json(code_json(code), status=201 if created else 200)


@bp.route("/delete", methods=["DELETE", "POST"])
async def delete(request: Request, user: CurrentUser, codes: CodeService) -> HTTPResponse:
    return json(code_json(await codes.delete(user.id)))


@bp.route("/getcode", methods=["GET", "POST"], ignore_body=False)
@limited_per_ip("getcode")
async def getcode(request: Request, codes: CodeService) -> HTTPResponse:
    lookup = validated(EmailLookup, query_or_body(request, ("email",)))
    return json(code_json(await codes.find_by_email(lookup.email)))
