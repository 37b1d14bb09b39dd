"""Request models: what a valid body or query looks like, with normalisation (emails lower-cased)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from referral.errors import ValidationFailed

PASSWORD_MIN, PASSWORD_MAX = 8, 256
DAY_MIN, DAY_MAX = 1, 365
CODE_PATTERN = r"^[A-Za-z0-9_-]{4,32}$"
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 1000
EMAIL_MAX = 254


@lru_cache(maxsize=4096)  # email_validator takes ~20 µs a call; getcode asks for the same emails again and again
def normalise_email(value: str) -> str:
    """Trimmed, validated and lower-cased; raises ValueError with a readable reason (errors are not cached)."""
    value = value.strip()
    if len(value) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid email address: {error}") from None
    return checked.normalized.lower()


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Email = Annotated[StrictStr, Field(max_length=1024), AfterValidator(normalise_email)]
Password = Annotated[StrictStr, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX), AfterValidator(_encodable)]
Code = Annotated[StrictStr, Field(pattern=CODE_PATTERN)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Credentials(RequestModel):
    email: Email
    password: Password


class LoginCredentials(RequestModel):
    """Login takes any non-empty password: the length rules are for choosing one."""

    email: Email
    password: Annotated[StrictStr, Field(min_length=1, max_length=4096)]


class CodeRequest(RequestModel):
    day: Annotated[StrictInt, Field(ge=DAY_MIN, le=DAY_MAX)]
    code: Code | None = None


class EmailLookup(RequestModel):
    email: Email


class ReferralRegistration(RequestModel):
    email: Email
    code: Code
    password: Password | None = None


class ReferralListQuery(RequestModel):
    user_id: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    limit: Annotated[StrictInt, Field(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    offset: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] = 0


M = TypeVar("M", bound="RequestModel")


def validated(model: type[M], data: Any) -> M:
    """`data` checked against `model`; a 422 naming each bad field otherwise."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", errors={"body": "must be a JSON object"})
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors=_field_errors(error)) from None


def _field_errors(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        fields.setdefault(name, message)
    return fields
