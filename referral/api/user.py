"""/user: registration, login, and the OAuth 2.0 password grant."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.requests import client_ip, json_body, limited_per_ip, services
from referral.api.shapes import json_response
from referral.errors import BadCredentials, TooManyRequests, ValidationFailed
from referral.openapi import (
    EXAMPLE_EMAIL,
    EXAMPLE_PASSWORD,
    EXAMPLE_TOKEN,
    FORM,
    Body,
    Doc,
    documented,
    problem,
    ref,
    success,
)
from referral.schemas import Credentials, LoginCredentials, validated
from referral.security import issue_token

bp = Blueprint("user", url_prefix="/user")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CREDENTIALS_EXAMPLE = {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}
TOKEN_FORM_EXAMPLE = {"grant_type": "password", "username": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}
OAUTH_ERROR_EXAMPLE = {"error": "invalid_grant", "error_description": "Wrong email or password."}


@bp.post("/register")
@documented(
    Doc(
        summary="Sign up",
        tag="user",
        body=Body("Credentials", CREDENTIALS_EXAMPLE),
        responses={201: success("The account was created.", ref("UserId"), {"user_id": 1})},
        errors=(400, 409, 413, 422, 429, 503),
    ),
    operation_id="register_user",
)
@limited_per_ip("register")
async def register(request: Request) -> HTTPResponse:
    """Create an account. The email is stored trimmed and lower-cased; 409 when it is taken."""
    body = validated(Credentials, json_body(request))
    user_id = await services(request).users.register(email=body.email, password=body.password)
    return json_response({"user_id": user_id}, status=201)


@bp.post("/auth")
@documented(
    Doc(
        summary="Sign in: get a JWT",
        tag="user",
        body=Body("LoginCredentials", CREDENTIALS_EXAMPLE),
        responses={
            200: success(
                "A token for the Authorization header.", ref("AuthToken"), {"token": EXAMPLE_TOKEN, "user_id": 1}
            ),
            401: problem(401, "Wrong email or password (one answer for both).", "Wrong email or password."),
        },
        errors=(400, 413, 422, 429, 503),
    ),
    operation_id="authenticate_user",
)
@limited_per_ip("auth")
async def auth(request: Request) -> HTTPResponse:
    """Trade an email and password for a JWT, valid for EXP_TOKEN_DAY days.

    An unknown email and a wrong password get the same answer. Repeated failures for one email are
    rate-limited (429).
    """
    users = services(request).users
    body = validated(LoginCredentials, json_body(request))
    user_id = await users.authenticate(email=body.email, password=body.password)
    return json_response({"token": issue_token(user_id, users.settings), "user_id": user_id}, headers=NO_STORE)


def oauth_error(
    error: str, description: str, *, status: int = 400, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """An error of the token endpoint, shaped as RFC 6749 §5.2 says."""
    return json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={**NO_STORE, **(headers or {})},
    )


@bp.post("/token")
@documented(
    Doc(
        summary="OAuth 2.0 token (password grant)",
        tag="user",
        body=Body("TokenRequest", TOKEN_FORM_EXAMPLE, content_type=FORM),
        responses={
            200: success(
                "An RFC 6749 §5.1 access token.",
                ref("OAuthToken"),
                {"access_token": EXAMPLE_TOKEN, "token_type": "bearer", "expires_in": 86400},
            ),
            400: success(
                "An RFC 6749 §5.2 error: bad form, grant type or credentials.", ref("OAuthError"), OAUTH_ERROR_EXAMPLE
            ),
            429: {
                **success(
                    "Too many attempts (`slow_down`).",
                    ref("OAuthError"),
                    {"error": "slow_down", "error_description": "Too many requests: slow down."},
                ),
                "headers": problem(429)["headers"],
            },
        },
        errors=(413, 503),
    ),
    operation_id="issue_oauth_token",
)
async def token(request: Request) -> HTTPResponse:
    """OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3); errors as §5.2.

    Send `grant_type=password&username=<email>&password=<password>` as a form. This is the
    `tokenUrl` of the OAuth2 security scheme, so Swagger UI's **Authorize** button signs in here.
    """
    users = services(request).users
    try:
        await services(request).rate_limits.hit_ip(client_ip(request), "token")
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
    return json_response(
        {
            "access_token": issue_token(user_id, users.settings),
            "token_type": "bearer",
            "expires_in": users.settings.token_lifetime_seconds,
        },
        headers=NO_STORE,
    )
