"""The OpenAPI 3.0 document, derived from the app's routes and their `Operation` declarations.

Schemas come from the contract's pydantic models and TypedDicts; error statuses from each
operation's input, security, rate limit and declared service errors, through the problem table. A
route registered without a declaration is not documented, and nothing is documented that is not a
route: the document cannot drift from what the app serves.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, get_args, get_origin

from pydantic import TypeAdapter
from sanic import Sanic

from referral.api.contract import OAuthError, Problem
from referral.api.problems import (
    OAUTH_ERRORS,
    PROBLEM_CONTENT_TYPE,
    PROBLEMS,
    TOO_LARGE,
    InvalidInput,
    MalformedRequest,
    ProblemType,
    problem_body,
)
from referral.api.routing import FORM, JSON, Operation
from referral.errors import DatabaseUnavailable, RateLimited
from referral.services.users import NotAuthenticated

API_VERSION = "1.0.0"
BEARER = "BearerAuth"
OAUTH2 = "OAuth2Password"
TOKEN_URL = "/user/token"  # noqa: S105 - a path, not a secret

DESCRIPTION = """\
Sign up, get an expiring referral code, share it, and see who registered with it.

**Authentication.** Protected operations take a JWT in `Authorization: Bearer <token>` (or, as the
original API had it, `authorization: <token>`). Get one from `POST /user/auth` (JSON) or
`POST /user/token` (the OAuth 2.0 password grant, which Swagger UI's **Authorize** button uses).

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
    OAUTH2: {
        "type": "oauth2",
        "description": "OAuth 2.0 password grant: Swagger UI's Authorize button trades an email and password "
        "for a token.",
        "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
    },
}
HEADER_DOCS = {
    "WWW-Authenticate": {"description": "`Bearer`, with the realm.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}},
}
EXAMPLE_FIELD_ERRORS = {"email": "is not a valid email address"}


def openapi_document(app: Sanic, *, title: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for route in sorted(app.router.routes, key=lambda route: route.path):
        op: Operation | None = getattr(route.ctx, "operation", None)
        if op is None:
            continue
        tags.setdefault(op.tag, inspect.getdoc(inspect.getmodule(op.handler)) or op.tag)
        for method in op.methods:
            paths.setdefault("/" + route.path, {})[method.lower()] = _operation(op, method, schemas)
    for shape in (Problem, OAuthError):
        _schema_ref(shape, schemas)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": API_VERSION, "description": DESCRIPTION},
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def _operation(op: Operation, method: str, schemas: dict[str, Any]) -> dict[str, Any]:
    primary = method == op.methods[0]
    body_form = method != "GET" and "GET" in op.methods
    document: dict[str, Any] = {
        "operationId": op.name if primary else f"{op.name}_{method.lower()}",
        "summary": op.summary + (" (JSON body)" if body_form else ""),
        "description": inspect.getdoc(op.handler) or op.summary,
        "tags": [op.tag],
    }
    has_json_body = False
    if op.input is not None:
        ref = _schema_ref(op.input, schemas)
        example = example_of(ref, schemas)
        if method == "GET":
            document["parameters"] = _query_parameters(schemas[op.input.__name__])
        else:
            media = FORM if op.source == "form" else JSON
            has_json_body = media == JSON
            document["requestBody"] = {"required": True, "content": {media: {"schema": ref, "example": example}}}
    if op.secured:
        document["security"] = [{BEARER: []}, {OAUTH2: []}]
    responses: dict[str, Any] = {}
    for success in op.answers:
        responses[str(success.status)] = _success(success.shape, success.description, success.headers, schemas)
    for status, errors in _error_statuses(op, has_json_body).items():
        responses.setdefault(str(status), _problem(status, errors))
    if op.oauth_errors:
        for status, error in sorted(set(OAUTH_ERRORS.values())):
            if status != 400:  # 400 is declared as the route's answer
                example = {"error": error, "error_description": RateLimited.message}
                responses[str(status)] = {
                    **_media("Too many attempts (`slow_down`).", _schema_ref(OAuthError, schemas), example),
                    "headers": {"Retry-After": HEADER_DOCS["Retry-After"]},
                }
    document["responses"] = dict(sorted(responses.items()))
    return document


def _error_statuses(op: Operation, has_json_body: bool) -> dict[int, list[type[Exception]]]:
    """The statuses an operation may answer with an error, each with the errors behind it."""
    errors: list[type[Exception]] = [DatabaseUnavailable]
    if has_json_body:
        errors.append(MalformedRequest)
    if op.input is not None and op.source != "form":
        errors.append(InvalidInput)
    if op.secured:
        errors.append(NotAuthenticated)
    if (op.limit is not None or op.user_limit) and not op.oauth_errors:
        errors.append(RateLimited)
    errors.extend(op.errors)
    by_status: dict[int, list[type[Exception]]] = {413: []}
    for error in errors:
        by_status.setdefault(PROBLEMS[error].status, []).append(error)
    return by_status


def _problem(status: int, errors: Iterable[type[Exception]]) -> dict[str, Any]:
    errors = list(errors)
    messages = [getattr(error, "message", "") for error in errors] or [TOO_LARGE]
    found: ProblemType | None = PROBLEMS[errors[0]] if errors else None
    example = problem_body(
        status,
        messages[0],
        slug=found.slug if found else "",
        errors=EXAMPLE_FIELD_ERRORS if status == 422 else None,
    )
    response = _media(" Or: ".join(dict.fromkeys(messages)), {"$ref": "#/components/schemas/Problem"}, example)
    response["content"] = {PROBLEM_CONTENT_TYPE: response["content"][JSON]}
    headers = {name: HEADER_DOCS[name] for error in errors for name in PROBLEMS[error].headers}
    if headers:
        response["headers"] = headers
    return response


def _success(shape: Any, description: str, headers: Mapping[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
    if shape is None:
        return {"description": description}
    if get_origin(shape) is list:
        [item] = get_args(shape)
        schema: dict[str, Any] = {"type": "array", "items": _schema_ref(item, schemas)}
    else:
        schema = _schema_ref(shape, schemas)
    response = _media(description, schema, example_of(schema, schemas))
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "integer", "minimum": 0}} for name, text in headers.items()
        }
    return response


def _media(description: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema, "example": example}}}


def example_of(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """An example assembled from the fields' own: required fields, and optional ones with a default."""
    if "$ref" in schema:
        return example_of(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "array":
        return [example_of(schema["items"], schemas)]
    required = set(schema.get("required", ()))
    return {
        name: prop["default"] if "default" in prop else example_of(prop, schemas)
        for name, prop in schema.get("properties", {}).items()
        if name in required or prop.get("default") is not None
    }


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


def _schema_ref(shape: Any, schemas: dict[str, Any]) -> dict[str, str]:
    """Add `shape` (and the shapes it nests) to `schemas`; a `$ref` to it."""
    name = shape.__name__
    if name not in schemas:
        generated = TypeAdapter(shape).json_schema(ref_template="#/components/schemas/{model}")
        for nested, nested_schema in generated.pop("$defs", {}).items():
            schemas.setdefault(nested, openapi30(nested_schema))
        schemas[name] = openapi30(generated)
    return {"$ref": f"#/components/schemas/{name}"}


def openapi30(schema: Any) -> Any:
    """JSON Schema as pydantic writes it, in OpenAPI 3.0's dialect.

    `X | None` (anyOf with null) becomes `nullable`, `examples` an `example`, `const` a one-value
    `enum`; generated titles are dropped (the names say it).
    """
    if isinstance(schema, list):
        return [openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    any_of = schema.get("anyOf")
    if any_of and {"type": "null"} in any_of:
        others = [item for item in any_of if item != {"type": "null"}]
        if len(others) == 1:
            del schema["anyOf"]
            schema = {**others[0], **schema, "nullable": True}
    schema.pop("title", None)
    if "examples" in schema:
        schema["example"] = schema.pop("examples")[0]
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            converted[key] = {name: openapi30(prop) for name, prop in value.items()}
        elif key in ("example", "default", "enum"):
            converted[key] = value
        else:
            converted[key] = openapi30(value)
    return converted
