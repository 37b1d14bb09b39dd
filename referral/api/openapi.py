"""The OpenAPI 3.0 document, derived from the app's routes and their `Operation` declarations.

Schemas come from the contract's pydantic models and TypedDicts; error statuses from each
operation's input, security, rate limit and declared service errors, through the problem table. A
route registered without a declaration is not documented, and nothing is documented that is not a
route: the document cannot drift from what the app serves.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema
from sanic import Sanic

from referral.api.contract import OAuthError, Problem
from referral.api.problems import (
    OAUTH_ERRORS,
    PROBLEM_CONTENT_TYPE,
    PROBLEMS,
    TOO_LARGE,
    InvalidInput,
    MalformedRequest,
    problem_body,
)
from referral.api.routing import FORM, JSON, Answer, Operation, requires_a_field
from referral.errors import DatabaseUnavailable, RateLimited
from referral.security import BadApiKey
from referral.services.users import NotAuthenticated

API_VERSION = "1.0.0"
BEARER = "BearerAuth"
OAUTH2 = "OAuth2Password"
API_KEY = "IntegrationKey"
TOKEN_URL = "/user/token"  # noqa: S105 - a path, not a secret
COMPONENTS = "#/components/schemas/"
PATH_PARAMETER = re.compile(r"<(\w+):int>")

DESCRIPTION = """\
Sign up, get an expiring referral code, share it, and see who registered with it.

**Authentication.** Protected operations take a JWT in `Authorization: Bearer <token>` (or, as the
original API had it, `authorization: <token>`). Get one from `POST /user/auth` (JSON) or
`POST /user/token` (the OAuth 2.0 password grant, which Swagger UI's **Authorize** button uses).
The integrator's backend calls `/integration/*` with `X-API-Key: <one of INTEGRATION_KEYS>` (also
offered by **Authorize**); a key opens nothing else, and a user's token does not open those.

**Errors** are RFC 9457 problem details (`application/problem+json`): `type`, `title`, `status`,
`detail`, and for validation failures `errors` naming each bad field. `/user/token` answers errors
as RFC 6749 §5.2 says (`error`, `error_description`).

**Dates** are ISO 8601 with the UTC offset, e.g. `2026-12-03T21:15:00+00:00`.
"""

SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT from `/user/auth` or `/user/token`, sent as `Authorization: Bearer <token>`.",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of INTEGRATION_KEYS, for the integrator's backend: `/integration/*` only (a user's "
        "token never opens them, and a key opens nothing else).",
    },
    OAUTH2: {
        "type": "oauth2",
        "description": "OAuth 2.0 password grant: Swagger UI's Authorize button trades an email and password "
        "for a token.",
        "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
    },
}
HEADER_DOCS = {
    "WWW-Authenticate": {
        "description": "`Bearer` (`ApiKey` on `/integration/*`), with the realm.",
        "schema": {"type": "string"},
    },
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}},
}
EXAMPLE_FIELD_ERRORS = {"email": "is not a valid email address"}


def openapi_document(app: Sanic, *, title: str) -> dict[str, Any]:
    routes = sorted(app.router.routes, key=lambda route: route.path)
    operations = [(route.path, op) for route in routes if (op := getattr(route.ctx, "operation", None)) is not None]
    shapes = [Problem, OAuthError]
    for _, op in operations:
        shapes += [shape for shape in (op.input, *(success.shape for success in op.answers)) if shape is not None]
    schemas = Schemas.of(shapes)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for path, op in operations:
        tags.setdefault(op.tag, inspect.getdoc(inspect.getmodule(op.handler)) or op.tag)
        for method in op.methods:
            paths.setdefault("/" + PATH_PARAMETER.sub(r"{\1}", path), {})[method.lower()] = _operation(
                op, method, schemas, path
            )
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": API_VERSION, "description": DESCRIPTION},
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def _operation(op: Operation, method: str, schemas: Schemas, path: str) -> dict[str, Any]:
    json_body = op.input is not None and method != "GET" and op.source != "form"
    document: dict[str, Any] = {
        "operationId": op.operation_id(method),
        "summary": op.summary + (" (JSON body)" if json_body and "GET" in op.methods else ""),
        "description": inspect.getdoc(op.handler) or op.summary,
        "tags": [op.tag],
    }
    parameters = _path_parameters(path)
    if op.input is not None and method == "GET":
        parameters += _query_parameters(schemas.components[op.input.__name__])
    elif op.input is not None:
        schema = schemas.refs[op.input]
        media = {"schema": schema, "example": schemas.example(schema)}
        required = op.source == "form" or requires_a_field(op.input)
        document["requestBody"] = {"required": required, "content": {JSON if json_body else FORM: media}}
    if parameters:
        document["parameters"] = parameters
    if op.secured:
        document["security"] = [{BEARER: []}, {OAUTH2: []}]
    if op.keyed:
        document["security"] = [{API_KEY: []}]
    responses = {str(success.status): _success(success, schemas) for success in op.answers}
    for status, errors in _error_statuses(op, json_body).items():
        responses.setdefault(str(status), _problem(status, errors))
    if op.oauth_errors:  # RFC 6749 §5.2's slow_down; its 400s are the route's declared answer
        example = {"error": OAUTH_ERRORS[RateLimited][1], "error_description": RateLimited.message}
        headers = {"Retry-After": HEADER_DOCS["Retry-After"]}
        responses["429"] = _response("Too many attempts (`slow_down`).", schemas.refs[OAuthError], example, headers)
    document["responses"] = dict(sorted(responses.items()))
    return document


def _error_statuses(op: Operation, json_body: bool) -> dict[int, list[type[Exception]]]:
    """The statuses an operation may answer with an error, each with the errors behind it."""
    errors: list[type[Exception]] = [DatabaseUnavailable]
    if json_body:
        errors.append(MalformedRequest)
    if op.input is not None and op.source != "form":
        errors.append(InvalidInput)
    if op.secured:
        errors.append(NotAuthenticated)
    if op.keyed:
        errors.append(BadApiKey)
    if (op.limit is not None or op.user_limit) and not op.oauth_errors:
        errors.append(RateLimited)
    errors.extend(op.errors)
    by_status: dict[int, list[type[Exception]]] = {413: []}
    for error in errors:
        by_status.setdefault(PROBLEMS[error].status, []).append(error)
    return by_status


def _problem(status: int, errors: list[type[Exception]]) -> dict[str, Any]:
    """The errors behind `status` in one answer: each message in its description, the first as the example."""
    messages = [getattr(error, "message", "") for error in errors] or [TOO_LARGE]
    first = PROBLEMS[errors[0]] if errors else None
    example = problem_body(
        status,
        messages[0],
        slug=first.slug if first else "",
        errors=EXAMPLE_FIELD_ERRORS if status == 422 else None,
        title=first.title if first else None,
    )
    headers = {name: HEADER_DOCS[name] for error in errors for name in PROBLEMS[error].headers}
    description = " Or: ".join(dict.fromkeys(messages))
    return _response(description, {"$ref": COMPONENTS + "Problem"}, example, headers, PROBLEM_CONTENT_TYPE)


def _success(success: Answer, schemas: Schemas) -> dict[str, Any]:
    if success.shape is None:
        return {"description": success.description}
    schema = schemas.refs[success.shape]
    headers = {
        name: {"description": text, "schema": {"type": "integer", "minimum": 0}}
        for name, text in success.headers.items()
    }
    return _response(success.description or success.shape.__doc__, schema, schemas.example(schema), headers)


def _response(
    description: str, schema: dict[str, Any], example: Any, headers: dict[str, Any], media_type: str = JSON
) -> dict[str, Any]:
    response = {"description": description, "content": {media_type: {"schema": schema, "example": example}}}
    return {**response, "headers": headers} if headers else response


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """Sanic's `<name:int>` path parameters (the only kind the routes use), as OpenAPI's."""
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "format": "int32", "minimum": 1}}
        for name in PATH_PARAMETER.findall(path)
    ]


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


@dataclass(frozen=True)
class Schemas:
    """The contract's shapes as OpenAPI 3.0 schemas, generated by pydantic in one go."""

    refs: dict[Any, dict[str, Any]]  # each shape: a `$ref` to its component (an array of them for `list[...]`)
    components: dict[str, dict[str, Any]]  # the shapes, and those they nest, by name

    @classmethod
    def of(cls, shapes: Iterable[Any]) -> Schemas:
        adapters = [(shape, "validation", TypeAdapter(shape)) for shape in dict.fromkeys(shapes)]
        refs, defs = TypeAdapter.json_schemas(adapters, ref_template=COMPONENTS + "{model}", schema_generator=OpenAPI30)
        return cls({shape: schema for (shape, _mode), schema in refs.items()}, defs["$defs"])

    def example(self, schema: dict[str, Any]) -> Any:
        """An example assembled from the fields' own: required fields, and optional ones with a default."""
        if "$ref" in schema:
            return self.example(self.components[schema["$ref"].removeprefix(COMPONENTS)])
        if "example" in schema:
            return schema["example"]
        if "enum" in schema:
            return schema["enum"][0]
        if schema.get("type") == "array":
            return [self.example(schema["items"])]
        required = set(schema.get("required", ()))
        return {
            name: prop["default"] if "default" in prop else self.example(prop)
            for name, prop in schema.get("properties", {}).items()
            if name in required or prop.get("default") is not None
        }


class OpenAPI30(GenerateJsonSchema):
    """pydantic's JSON Schema in OpenAPI 3.0's dialect: `X | None` is `nullable`, a one-value `Literal` an
    `enum`, and fields have no generated titles (their names say it). Examples are written as 3.0's
    `example` by the contract itself."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        return {**({"allOf": [inner]} if "$ref" in inner else inner), "nullable": True}  # 3.0 ignores $ref's siblings

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        generated = super().literal_schema(schema)
        if "const" in generated:
            generated["enum"] = [generated.pop("const")]
        return generated

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False
