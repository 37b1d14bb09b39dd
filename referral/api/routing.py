"""Routes declared once: `operation(...)` registers a handler and says everything about it.

A declaration names the methods (aliases included), the answers, which rate limit applies and the
service errors it can raise; the handler's signature names the request model (`body`) and whether a
token is needed (`user_id`). The request is checked (limit, token, input) before the handler runs,
and the OpenAPI document (`referral.api.openapi`) is derived from the same declaration.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_type_hints

import orjson
from pydantic import BaseModel, ValidationError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from referral import metrics
from referral.api.problems import NO_STORE, NOSNIFF, InvalidInput, MalformedRequest
from referral.errors import RateLimited
from referral.security import BadApiKey

if TYPE_CHECKING:
    from referral.app import AppContext

Handler = Callable[..., Awaitable[HTTPResponse]]
Source = Literal["json", "query_or_json", "form"]
M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, eq=False)
class Answer:
    """A success answer: its status, shape (a TypedDict, or `list[TypedDict]`) and description (the
    shape's docstring when none is given)."""

    status: int
    shape: Any
    description: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description (integer values)


@dataclass(frozen=True, eq=False)
class Operation:
    name: str
    methods: tuple[str, ...]
    summary: str
    tag: str
    handler: Handler
    answers: tuple[Answer, ...]
    input: type[BaseModel] | None = None
    source: Source = "json"
    secured: bool = False  # a user's token (`user_id`)
    keyed: bool = False  # an integration key (`integration_caller`): `/integration/*`, never a user's token
    limit: str | None = None  # the per-IP rate-limit scope
    user_limit: bool = False  # an authenticated write: counted against RATE_LIMIT_USER
    no_store: bool = False  # the answer carries a token or an email: never cached
    errors: tuple[type[Exception], ...] = ()
    oauth_errors: bool = False  # errors answered as RFC 6749 §5.2 says, where it says how

    def operation_id(self, method: str) -> str:
        """The handler's name for the first method, `<name>_<method>` for an alias: published ids
        (SPEC.md's table) that generated clients name their functions after, so never renamed."""
        return self.name if method == self.methods[0] else f"{self.name}_{method.lower()}"


def operation(
    bp: Blueprint,
    methods: str,
    path: str,
    *,
    summary: str,
    answers: tuple[Answer, ...] | Answer,
    form: type[BaseModel] | None = None,
    limit: str | None = None,
    user_limit: bool = False,
    no_store: bool = False,
    errors: tuple[type[Exception], ...] = (),
    oauth_errors: bool = False,
    head: bool = False,
) -> Callable[[Handler], Handler]:
    """Register the handler on `bp` for `methods` (e.g. "GET|POST") and describe it for the document.

    The handler's signature says the rest: a `user_id` parameter makes the operation secured (it gets
    the token's user), an `integration_caller` one makes it take an integration key instead (it gets
    the key's name, and the rate limit counts per key), a `body: Model` one makes `Model` its input,
    read from the JSON body (or, with GET among the methods, from the query string when it has any of
    the fields). `form` is the model of a form the handler reads itself, for the document. The
    docstring is the description. `head` also answers HEAD as GET, without the body (load balancers
    probe so); HEAD is not documented.
    """
    method_list = tuple(methods.split("|"))

    def decorate(handler: Handler) -> Handler:
        parameters = get_type_hints(handler)
        input = form or parameters.get("body")
        op = Operation(
            name=handler.__name__,
            methods=method_list,
            summary=summary,
            tag=bp.name,
            handler=handler,
            answers=answers if isinstance(answers, tuple) else (answers,),
            input=input,
            source="form" if form else "query_or_json" if "GET" in method_list else "json",
            secured="user_id" in parameters,
            keyed="integration_caller" in parameters,
            limit=limit,
            user_limit=user_limit,
            no_store=no_store,
            errors=errors,
            oauth_errors=oauth_errors,
        )
        methods = [*method_list, "HEAD"] if head else list(method_list)
        bp.route(path, methods=methods, name=op.name, ignore_body=False, ctx_operation=op)(_endpoint(op))
        return handler

    return decorate


def _endpoint(op: Operation) -> Handler:
    read = _READERS[op.source] if op.input is not None else None
    model, handler, scope, secured, user_limit = op.input, op.handler, op.limit, op.secured, op.user_limit
    no_store, keyed = op.no_store, op.keyed

    async def endpoint(request: Request, **path: Any) -> HTTPResponse:
        ctx = request.app.ctx
        kwargs: dict[str, Any] = path  # the path's parameters (`<referral_id:int>`), typed by Sanic
        if keyed:
            kwargs["integration_caller"] = await _integration_caller(request, scope)
        elif scope is not None and ctx.rate_limits.enabled:  # RATE_LIMIT=off: not even the address is read
            await _counted(ctx.rate_limits.hit_ip(client_ip(request), scope), scope)
        if secured:
            user_id = await ctx.users.user_of_token(token_from_header(request.headers.get("authorization")))
            request.ctx.user_id = user_id  # for the access line
            if user_limit:
                try:
                    await ctx.rate_limits.hit_user(user_id)
                except RateLimited:
                    metrics.rate_limited("user")
                    raise
            kwargs["user_id"] = user_id
        if read is not None and model is not None:
            kwargs["body"] = read(request, model)
        response = await handler(request, **kwargs)
        if no_store:
            response.headers.update(NO_STORE)
        return response

    endpoint.__name__ = endpoint.__qualname__ = op.name
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def _counted(hit: Awaitable[None], scope: str) -> None:
    """A rate-limit hit; a refusal is counted in the metrics before it is raised."""
    try:
        await hit
    except RateLimited:
        metrics.rate_limited(scope)
        raise


async def _integration_caller(request: Request, scope: str | None) -> str:
    """The name of the request's integration key, counted against that key's limit; a missing or wrong key
    counts against the client address's limit, then answers 401 (BadApiKey)."""
    ctx = request.app.ctx
    try:
        caller = ctx.integration_keys.caller(request.headers.get("x-api-key"))
    except BadApiKey:
        if scope is not None:
            await _counted(ctx.rate_limits.hit_ip(client_ip(request), scope), scope)
        raise
    if scope is not None:
        await _counted(ctx.rate_limits.hit_key(caller, scope), scope)
    return caller


def services(request: Request) -> AppContext:
    """The app's long-lived objects (`referral.app.AppContext`): `services(request).codes`."""
    return request.app.ctx


def answer(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
    """A JSON answer serialised by orjson (faster than Sanic's default: bench/RESULTS.md).

    Only for bodies built from stored or validated data (orjson refuses lone surrogates); error
    answers, which may quote input, go through Sanic's `json()` in `referral.api.problems`.
    """
    headers = NOSNIFF if headers is None else {**NOSNIFF, **headers}  # Sanic copies them: sharing is safe
    return HTTPResponse(orjson.dumps(body), status=status, headers=headers, content_type=JSON)


def no_content() -> HTTPResponse:
    return HTTPResponse(status=204, headers=NOSNIFF)


# ------------------------------------------------------------------------------------------- #
# Reading requests
# ------------------------------------------------------------------------------------------- #


def validated(model: type[M], data: Any) -> M:
    """`data` checked against `model`; InvalidInput naming each bad field otherwise."""
    if not isinstance(data, dict):
        raise InvalidInput({"body": "must be a JSON object"}, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(_field_errors(error)) from None


def _field_errors(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        fields.setdefault(name, item["msg"].removeprefix("Value error, "))
    return fields


def json_body(request: Request) -> Any:
    """The parsed JSON body, None when there is none; MalformedRequest when it is not JSON."""
    if not request.body:
        return None
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError):
        raise MalformedRequest() from None


def from_json(request: Request, model: type[M]) -> M:
    """The model from the JSON body; no body at all is an empty object when the model requires no field
    (a body of JSON `null` is not: it is not an object)."""
    if not request.body and not requires_a_field(model):
        return validated(model, {})
    return validated(model, json_body(request))


def requires_a_field(model: type[BaseModel]) -> bool:
    return any(field.is_required() for field in model.model_fields.values())


def from_query_or_json(request: Request, model: type[M]) -> M:
    """The model's fields from the query string when any is there (blank ones too: `?status=` is a bad
    status, not no status), otherwise from the JSON body (GET with a body)."""
    args = request.get_args(keep_blank_values=True)
    found = {name: _query_value(args.get(name)) for name in model.model_fields if name in args}
    if found:
        return validated(model, found)
    body = json_body(request)
    return validated(model, {} if body is None else body)


def _query_value(raw: str) -> Any:
    """Query values are text: whole numbers become ints so the same model checks both forms."""
    if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 19:
        return int(raw)
    return raw


_READERS: dict[Source, Callable[[Request, type[BaseModel]], BaseModel] | None] = {
    "json": from_json,
    "query_or_json": from_query_or_json,
    "form": None,  # the handler reads its form itself: OAuth 2.0 says how each fault is answered
}


def token_from_header(value: str | None) -> str | None:
    """The token of `authorization: <jwt>` (the seed's form) or `Authorization: Bearer <jwt>`."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value.strip()
    return token or None


def client_ip(request: Request) -> str:
    """The client's address: the proxy-reported one when Sanic's proxy settings allow it.

    Without any of those settings Sanic trusts no forwarding header, and the headers are not parsed.
    """
    if request.app.ctx.trusts_forwarding:
        return request.remote_addr or request.ip or "unknown"
    return request.ip or "unknown"
