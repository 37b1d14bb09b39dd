"""The authenticated user of a request, from `authorization: <jwt>` or `Authorization: Bearer <jwt>`."""

from __future__ import annotations

from dataclasses import dataclass

from sanic import Request

from referral.errors import Unauthorized
from referral.security import InvalidToken, read_token


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int


def token_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value.strip()
    return token or None


async def current_user(request: Request) -> CurrentUser:
    """The user of the request's token, for a handler's first line: `user = await current_user(request)`.

    401 unless the token is valid and its user still exists.
    """
    token = token_from_header(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized()
    try:
        user_id = read_token(token, request.app.ctx.settings)
    except InvalidToken:
        raise Unauthorized("The token is invalid or expired.") from None
    if not await request.app.ctx.users.exists(user_id):
        raise Unauthorized("The user of this token no longer exists.")
    return CurrentUser(user_id)
