"""/user: registration, login, and the OAuth 2.0 password grant."""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from referral.api.requests import client_ip, json_body, limited_per_ip
from referral.errors import BadCredentials, TooManyRequests, ValidationFailed
from referral.schemas import Credentials, LoginCredentials, validated
from referral.security import issue_token
from referral.services.users import UserService

bp = Blueprint("user", url_prefix="/user")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@bp.post("/register")
@limited_per_ip("register")
async def register(request: Request, users: UserService) -> HTTPResponse:
    body = validated(Credentials, json_body(request))
    user_id = await users.register(email=body.email, password=body.password)
    return json({"user_id": user_id}, status=201)


@bp.post("/auth")
@limited_per_ip("auth")
async def auth(request: Request, users: UserService) -> HTTPResponse:
    body = validated(LoginCredentials, json_body(request))
    user_id = await users.authenticate(email=body.email, password=body.password)
    return json({"token": issue_token(user_id, users.settings), "user_id": user_id}, headers=NO_STORE)


def oauth_error(
    error: str, description: str, *, status: int = 400, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """An error of the token endpoint, shaped as RFC 6749 §5.2 says."""
    return json(
        {"error": error, "error_description": description},
        status=status,
        headers={**NO_STORE, **(headers or {})},
    )


@bp.post("/token")
async def token(request: Request, users: UserService) -> HTTPResponse:
    """OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3); errors as §5.2."""
    try:
        await request.app.ctx.rate_limits.hit_ip(client_ip(request), "token")
    except TooManyRequests as error:
        return oauth_error("slow_down", str(error), status=429, headers=error.headers)
    if request.content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "Send the form as application/x-www-form-urlencoded.")
    form = request.form
    if any(len(form.getlist(name, [])) > 1 for name in ("grant_type", "username", "password")):
        return oauth_error("invalid_request", "Each parameter may be given once.")
    grant_type = form.get("grant_type")
    if not grant_type:
        return oauth_error("invalid_request", "grant_type is required.")
    if grant_type != "password":
        return oauth_error("unsupported_grant_type", "Only the password grant is supported.")
    username, password = form.get("username"), form.get("password")
    if not username or not password:
        return oauth_error("invalid_request", "username and password are required.")
    try:
        credentials = validated(LoginCredentials, {"email": username, "password": password})
        user_id = await users.authenticate(email=credentials.email, password=credentials.password)
    except (ValidationFailed, BadCredentials):
        return oauth_error("invalid_grant", "Wrong email or password.")
    except TooManyRequests as error:
        return oauth_error("slow_down", str(error), status=429, headers=error.headers)
    return json(
        {
            "access_token": issue_token(user_id, users.settings),
            "token_type": "bearer",
            "expires_in": users.settings.token_lifetime_seconds,
        },
        headers=NO_STORE,
    )
