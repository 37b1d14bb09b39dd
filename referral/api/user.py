"""/user: registration, sign-in, the OAuth 2.0 password grant, logout, password change and reset, deletion
and export."""

from __future__ import annotations

from pydantic import ValidationError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral.api.contract import (
    RESET_REQUESTED,
    AccountDeletion,
    AccountExportAnswer,
    AuthToken,
    Credentials,
    LoginCredentials,
    OAuthError,
    OAuthToken,
    PasswordChange,
    PasswordForgotten,
    PasswordReset,
    ResetRequested,
    TokenRequest,
    UserId,
    export_json,
)
from referral.api.problems import InvalidOAuthRequest, UnsupportedGrantType
from referral.api.routing import FORM, Answer, answer, client_ip, no_content, operation, services
from referral.errors import Overloaded
from referral.services.passwords import PasswordRefused
from referral.services.resets import InvalidResetToken
from referral.services.users import BadCredentials, EmailTaken, WrongPassword

bp = Blueprint("user", url_prefix="/user")


@operation(
    bp,
    "POST",
    "/register",
    summary="Sign up",
    answers=Answer(201, UserId, "The account was created."),
    limit="register",
    errors=(EmailTaken, PasswordRefused, Overloaded),
)
async def register_user(request: Request, body: Credentials) -> HTTPResponse:
    """Create an account. The email is stored trimmed and lower-cased; 409 when it is taken.

    The password is refused (422) when it is only whitespace, among the 10,000 most common, or
    contains the name of the email address.
    """
    user_id = await services(request).users.register(
        email=body.email, password=body.password, client=client_ip(request)
    )
    return answer({"user_id": user_id}, status=201)


@operation(
    bp,
    "POST",
    "/auth",
    summary="Sign in: get a JWT",
    answers=Answer(200, AuthToken),
    limit="auth",
    no_store=True,
    errors=(BadCredentials, Overloaded),
)
async def authenticate_user(request: Request, body: LoginCredentials) -> HTTPResponse:
    """Trade an email and password for a JWT, valid for EXP_TOKEN_DAY days.

    An unknown email and a wrong password get the same answer. Failed logins for one email from one
    address are limited (429); other addresses are not affected.
    """
    signed_in = await services(request).users.sign_in(
        email=body.email, password=body.password, client=client_ip(request)
    )
    return answer({"token": signed_in.token, "user_id": signed_in.user_id})


@operation(
    bp,
    "POST",
    "/token",
    summary="OAuth 2.0 token (password grant)",
    form=TokenRequest,
    answers=(
        Answer(200, OAuthToken),
        Answer(400, OAuthError, "An RFC 6749 §5.2 error: bad form, grant type or credentials."),
    ),
    limit="token",
    no_store=True,
    errors=(Overloaded,),
    oauth_errors=True,
)
async def issue_oauth_token(request: Request) -> HTTPResponse:
    """OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3); errors as §5.2.

    Send `grant_type=password&username=<email>&password=<password>` as a form. This is the
    `tokenUrl` of the OAuth2 security scheme, so Swagger UI's **Authorize** button signs in here.
    """
    form = token_form(request)
    signed_in = await services(request).users.sign_in(
        email=form.username, password=form.password, client=client_ip(request)
    )
    return answer({"access_token": signed_in.token, "token_type": "bearer", "expires_in": signed_in.expires_in})


@operation(
    bp,
    "POST",
    "/logout",
    summary="Sign out everywhere",
    answers=Answer(204, None, "Every token of yours issued until now has stopped working."),
    user_limit=True,
)
async def logout(request: Request, user_id: int) -> HTTPResponse:
    """End every token of yours issued until now, this one included. A token from a later sign-in works."""
    await services(request).users.log_out(user_id)
    return no_content()


@operation(
    bp,
    "POST",
    "/password",
    summary="Change your password",
    answers=Answer(200, AuthToken, "The password was changed: a fresh token (every older one has stopped working)."),
    user_limit=True,
    no_store=True,
    errors=(WrongPassword, PasswordRefused, Overloaded),
)
async def change_password(request: Request, user_id: int, body: PasswordChange) -> HTTPResponse:
    """Replace your password. 403 when `current_password` is wrong (it counts as a failed login);
    422 when the new one is refused (`errors.new_password`).

    Every token issued before, this one included, stops working: use the one in the answer.
    """
    signed_in = await services(request).users.change_password(
        user_id, current=body.current_password, new=body.new_password, client=client_ip(request)
    )
    return answer({"token": signed_in.token, "user_id": signed_in.user_id})


@operation(
    bp,
    "POST",
    "/password/forgot",
    summary="Forgot your password: get a reset link by email",
    answers=Answer(202, ResetRequested, "Accepted: the same answer whether the email has an account or not."),
    limit="password-forgot",
)
async def forgot_password(request: Request, body: PasswordForgotten) -> HTTPResponse:
    """Email a one-time reset link to the account with this email, if there is one.

    The answer is the same for every email, so it tells nobody whether an account exists. The link
    works once, for RESET_TOKEN_TTL seconds, and a newer request replaces it. At most 3 messages an
    hour go to one mailbox; past that the answer is the same and no message is sent.
    """
    await services(request).resets.request(body.email)
    return answer({"detail": RESET_REQUESTED}, status=202)


@operation(
    bp,
    "POST",
    "/password/reset",
    summary="Choose a new password with a reset link's token",
    answers=Answer(200, AuthToken, "The password was reset: a fresh token (every older one has stopped working)."),
    limit="password-reset",
    no_store=True,
    errors=(InvalidResetToken, PasswordRefused, Overloaded),
)
async def reset_password(request: Request, body: PasswordReset) -> HTTPResponse:
    """Set a new password with the token from the reset email. Every token issued before stops working.

    400 for a token that is unknown, already used or expired (one answer for the three); 422 when the
    new password is refused (`errors.new_password`), and the reset token still works.
    """
    signed_in = await services(request).resets.reset(
        body.token, new_password=body.new_password, client=client_ip(request)
    )
    return answer({"token": signed_in.token, "user_id": signed_in.user_id})


@operation(
    bp,
    "POST",
    "/delete",
    summary="Delete your account",
    answers=Answer(204, None, "The account is deleted: its codes, its tokens and its email are gone."),
    user_limit=True,
    errors=(WrongPassword, Overloaded),
)
async def delete_account(request: Request, user_id: int, body: AccountDeletion) -> HTTPResponse:
    """Delete your account, confirmed with your password (403 when wrong; it counts as a failed login).

    Your codes stop working (getcode 404, referral registration 410), every token ends, and your email is
    erased from everything the service keeps: where you were someone's referral, that referral stays in
    their list and counts with `email: null`. The email may register again as a new account.
    """
    await services(request).users.delete_account(user_id, password=body.password, client=client_ip(request))
    return no_content()


@operation(
    bp,
    "GET",
    "/export",
    summary="Download everything stored about you",
    answers=Answer(200, AccountExportAnswer, "One JSON document, sent as an attachment."),
    no_store=True,
)
async def export_account(request: Request, user_id: int) -> HTTPResponse:
    """Everything the service stores about you (GDPR articles 15 and 20): your account, every code you were
    issued with its uses, the referrals made with your codes, and the referral you came from. Never your
    password hash or a reset token. Sent with `Content-Disposition: attachment`.
    """
    export = await services(request).referrals.export(user_id)
    disposition = f'attachment; filename="referral-account-{user_id}.json"'
    return answer(export_json(export), headers={"Content-Disposition": disposition})


def token_form(request: Request) -> TokenRequest:
    """The `/user/token` form checked by its model, each fault answered as RFC 6749 §5.2 says: a form
    that is malformed or misses a parameter is `invalid_request`, another grant type
    `unsupported_grant_type`, and credentials that cannot be an account's `invalid_grant`."""
    if request.content_type.split(";")[0].strip().lower() != FORM:
        raise InvalidOAuthRequest("Send the form as application/x-www-form-urlencoded.")
    form = request.form
    if any(len(form.getlist(name, [])) > 1 for name in TokenRequest.model_fields):
        raise InvalidOAuthRequest("Each parameter may be given once.")
    try:
        return TokenRequest.model_validate({name: form.get(name) for name in form})
    except ValidationError as error:
        faults = {str(item["loc"][0]): item["type"] for item in error.errors(include_url=False)}
    if "grant_type" in faults:
        if faults["grant_type"] == "missing":
            raise InvalidOAuthRequest("grant_type is required.")
        raise UnsupportedGrantType()
    if missing := [name for name, fault in faults.items() if fault == "missing"]:
        raise InvalidOAuthRequest(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required.")
    raise BadCredentials()
