"""The OpenAPI document at /docs/openapi.json: complete, exact, and the single source of truth.

Every route the app registers is in the spec with the same methods and nothing else is; every
operation has a summary, a description, one tag, its body or query parameters, every status it
answers with a schema and an example; protected operations (and only they) are secured, and they
really answer 401 without a token. The docs pages load nothing from outside the service.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema_rs  # a dependency of schemathesis: the JSON Schema validator it uses itself
import pytest
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from referral.api.contract import CODE_PATTERN, DAY_MAX, DAY_MIN, PASSWORD_MAX, PASSWORD_MIN
from referral.api.problems import PROBLEM_CONTENT_TYPE
from referral.api.routing import Operation
from tests.operation_ids import OPERATION_IDS

ERROR_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 429, 503}
OAUTH_STATUSES = {"400", "429"}  # what an operation declared with oauth_errors answers in RFC 6749's form
DOCS_ROUTE_PREFIXES = ("referral.openapi.", "referral.docs.")
# GET /metrics is the operators' (Prometheus' text format, internal network): served, deliberately not documented.
OPERATOR_ROUTES = ("referral.metrics.metrics",)


@pytest.fixture(scope="module")
def spec(api_once: Any) -> dict[str, Any]:
    answer = api_once.get("/docs/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()}


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` whose `$ref`s resolve into the spec's components (OpenAPI 3.0's `nullable`
    read as JSON Schema's null type)."""
    return jsonschema_rs.validator_for(json_schema({**schema, "components": spec["components"]}), validate_formats=True)


def json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it: the value may also be null."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {name: json_schema(value) for name, value in schema.items() if name != "nullable"}
    if schema.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def concrete(path: str) -> str:
    """A documented path with its parameters filled in (`{referral_id}` -> 1)."""
    return re.sub(r"\{\w+\}", "1", path)


def openapi_path(route: Any) -> str:
    return "/" + re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.path)


def app_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes:
        if route.name.startswith(DOCS_ROUTE_PREFIXES) or route.name in OPERATOR_ROUTES:
            continue
        found.update((method, openapi_path(route)) for method in route.methods if method not in {"HEAD", "OPTIONS"})
    return found


def declared(app: Any) -> dict[tuple[str, str], Operation]:
    """What each route declares about itself (`operation(...)` in referral.api): tag, security, input."""
    return {
        (method, openapi_path(route)): op
        for route in app.router.routes
        if (op := getattr(route.ctx, "operation", None)) is not None
        for method in op.methods
    }


def test_every_route_is_in_the_spec_with_the_same_methods_and_nothing_else(api_once, spec):
    assert set(operations(spec)) == app_routes(api_once.app) == set(declared(api_once.app))


def test_operation_ids_are_the_published_ones_of_spec_md(spec):
    """Every served operation is in SPEC.md's table with exactly its id (operations not served yet are not
    checked); a renamed handler would rename its operation and break every generated client."""
    served = {key: op["operationId"] for key, op in operations(spec).items()}
    assert served
    assert {key: OPERATION_IDS.get(key) for key in served} == served


def test_the_docs_routes_stay_out_of_the_spec(api_once, spec):
    routes = api_once.app.router.routes
    docs_paths = {"/" + route.path for route in routes if route.name.startswith(DOCS_ROUTE_PREFIXES)}
    assert "/docs/openapi.json" in docs_paths
    assert not docs_paths & set(spec["paths"])


def test_the_metrics_route_is_served_and_stays_out_of_the_spec(api_once, spec):
    [metrics] = [route for route in api_once.app.router.routes if route.name in OPERATOR_ROUTES]
    assert metrics.path == "metrics"
    assert api_once.get("/metrics").status_code == 200
    assert "/metrics" not in spec["paths"]


def test_every_operation_has_summary_description_its_declared_tag_and_a_unique_id(api_once, spec):
    ids, routes = [], declared(api_once.app)
    for key, op in operations(spec).items():
        assert op.get("summary"), key
        assert len(op.get("description", "")) > len(op["summary"]), key
        assert op["tags"] == [routes[key].tag], key
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))
    assert {tag["name"] for tag in spec["tags"]} == {op.tag for op in routes.values()}
    assert all(tag.get("description") for tag in spec["tags"])


def test_every_response_has_a_schema_an_example_and_errors_are_problems(api_once, spec):
    routes = declared(api_once.app)
    for (method, path), op in operations(spec).items():
        assert "default" not in op["responses"], (method, path)
        assert any(status.startswith("2") for status in op["responses"]), (method, path)
        for status, answer in op["responses"].items():
            assert answer.get("description"), (method, path, status)
            if status == "204":
                assert "content" not in answer, (method, path)  # no content means no body
                continue
            [(content_type, media)] = answer["content"].items()
            assert "schema" in media, (method, path, status)
            assert "example" in media, (method, path, status)
            assert validator(spec, media["schema"]).is_valid(media["example"]), (method, path, status)
            if int(status) >= 400 and not (routes[method, path].oauth_errors and status in OAUTH_STATUSES):
                assert int(status) in ERROR_STATUSES, (method, path, status)
                assert content_type == PROBLEM_CONTENT_TYPE, (method, path, status)
                assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
                assert media["example"]["status"] == int(status)


def test_statuses_that_every_operation_can_answer_are_documented(api_once, spec):
    routes = declared(api_once.app)
    for key, op in operations(spec).items():
        statuses = {int(status) for status in op["responses"]}
        assert 413 in statuses, key  # any request may be too large: its body, or its URL and headers
        assert 503 in statuses, key  # the database may be down
        if routes[key].secured:
            assert 401 in statuses, key
        if "requestBody" in op and op["requestBody"]["content"].get("application/json"):
            assert {400, 422} <= statuses, key


def test_request_bodies_have_required_lists_constraints_and_valid_examples(api_once, spec):
    routes = declared(api_once.app)
    for key, op in operations(spec).items():
        if key[0] == "GET":
            assert "requestBody" not in op, key  # a GET body has no meaning in OpenAPI
            continue
        body = op.get("requestBody")
        if body is None:
            assert routes[key].input is None, key
            continue
        [(_content_type, media)] = body["content"].items()
        name = media["schema"]["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
        assert body["required"] is bool(schema.get("required")), key  # a body of optional fields may be left out
        assert set(schema.get("required", ())) <= set(schema["properties"]), key
        assert validator(spec, media["schema"]).is_valid(media["example"]), key
    schemas = spec["components"]["schemas"]
    password = schemas["Credentials"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (PASSWORD_MIN, PASSWORD_MAX)
    assert schemas["Credentials"]["properties"]["email"]["format"] == "email"
    day = schemas["CodeRequest"]["properties"]["day"]
    assert (day["type"], day["minimum"], day["maximum"]) == ("integer", DAY_MIN, DAY_MAX)
    assert schemas["CodeRequest"]["required"] == ["day"]
    for name in ("CodeRequest", "ReferralRegistration"):
        code = schemas[name]["properties"]["code"]
        assert (code["pattern"], code["minLength"], code["maxLength"]) == (CODE_PATTERN, 4, 32)
    assert set(schemas["ReferralRegistration"]["required"]) == {"email", "code"}
    [(content_type, media)] = spec["paths"]["/user/token"]["post"]["requestBody"]["content"].items()
    assert content_type == "application/x-www-form-urlencoded"
    assert media["schema"] == {"$ref": "#/components/schemas/TokenRequest"}
    assert set(schemas["TokenRequest"]["required"]) == {"grant_type", "username", "password"}


def test_get_forms_document_their_query_parameters(spec):
    getcode = {p["name"]: p for p in spec["paths"]["/refer/getcode"]["get"]["parameters"]}
    assert set(getcode) == {"email"}
    assert getcode["email"]["in"] == "query"
    assert getcode["email"]["required"] is True
    assert getcode["email"]["schema"]["format"] == "email"
    listing = {p["name"]: p for p in spec["paths"]["/referals/list"]["get"]["parameters"]}
    assert set(listing) == {"user_id", "limit", "offset"}
    assert [name for name, p in listing.items() if p.get("required")] == ["user_id"]
    assert listing["user_id"]["schema"]["type"] == "integer"
    assert (listing["limit"]["schema"]["minimum"], listing["limit"]["schema"]["maximum"]) == (1, 1000)
    assert listing["offset"]["schema"]["minimum"] == 0
    total = spec["paths"]["/referals/list"]["get"]["responses"]["200"]["headers"]["X-Total-Count"]
    assert total["schema"]["type"] == "integer"


BEARER_JWT = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def test_security_schemes_are_bearer_jwt_and_oauth2_password(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {**BEARER_JWT, "description": schemes["BearerAuth"]["description"]}
    assert schemes["OAuth2Password"]["type"] == "oauth2"
    assert {k: v for k, v in schemes["IntegrationKey"].items() if k != "description"} == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert schemes["OAuth2Password"]["flows"] == {"password": {"tokenUrl": "/user/token", "scopes": {}}}
    assert "security" not in spec or spec["security"] == []


def test_protected_operations_and_only_they_are_secured_and_really_refuse_without_a_token(api_once, spec):
    routes = declared(api_once.app)
    assert any(op.secured for op in routes.values())
    assert any(op.keyed for op in routes.values())
    for key, op in operations(spec).items():
        if routes[key].secured:
            assert op["security"] == [{"BearerAuth": []}, {"OAuth2Password": []}], key
        elif routes[key].keyed:
            assert op["security"] == [{"IntegrationKey": []}], key
        else:
            assert "security" not in op, key
        method, path = key
        path = concrete(path)
        answer = api_once.request(method, path, json={}) if method != "GET" else api_once.get(path)
        protected = routes[key].secured or routes[key].keyed
        assert (answer.status_code == 401) == protected, (key, answer.status_code)


def test_a_real_error_matches_the_problem_schema(api_once, spec):
    answer = api_once.post("/user/register", json={"email": "nope", "password": "short"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    problem = spec["components"]["schemas"]["Problem"]
    assert validator(spec, problem).is_valid(answer.json())
    assert set(answer.json()["errors"]) == {"email", "password"}


def test_an_overlong_url_is_a_documented_413_that_does_not_blame_the_body(api_once, spec):
    answer = api_once.get("/refer/getcode", params={"email": "x" * 20_000 + "@example.com"})
    assert answer.status_code == 413
    assert "413" in spec["paths"]["/refer/getcode"]["get"]["responses"]
    assert answer.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    assert answer.json()["detail"] == "The request headers are too large."


def test_a_real_success_matches_its_documented_schema(api, spec, make):
    user = make.user()
    answer = api.post("/refer/update_code", json={"day": 3}, headers=user.bearer)
    assert answer.status_code == 201
    schema = spec["paths"]["/refer/update_code"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert validator(spec, schema).is_valid(answer.json())


def test_docs_pages_load_only_assets_of_the_service(api_once):
    index = api_once.get("/docs", follow_redirects=False)
    assert index.status_code in {301, 302, 307, 308}
    assert index.headers["location"] == "/docs/swagger"
    for page, asset in (("/docs/swagger", "/docs/assets/swagger-ui-bundle.js"), ("/docs/redoc", None)):
        answer = api_once.get(page)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert not re.search(r"(src|href)=\"(https?:)?//", answer.text), answer.text
        if asset:
            assert f'src="{asset}"' in answer.text
    for name, media_type in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-init.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ):
        answer = api_once.get(f"/docs/assets/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(media_type), name
        assert len(answer.content) > 100, name


def test_redoc_comes_from_the_installed_npm_package(redoc_installed, api_once):
    answer = api_once.get("/docs/redoc")
    if "ReDoc is not installed" in answer.text:
        pytest.fail("redoc.standalone.js is missing: run `make venv`")
    bundle = api_once.get("/docs/assets/redoc.standalone.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert len(bundle.content) > 500_000


def test_no_cdn_oauth2_redirect_handler_and_unknown_assets_are_404(api_once):
    assert api_once.get("/docs/oauth2-redirect.html").status_code == 404
    unknown = api_once.get("/docs/assets/secrets.txt")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)


def test_assets_are_served_by_name_never_by_a_path_out_of_their_directory(api_once):
    """Sent as written (an HTTP client would resolve `..` itself, and the server never see it), towards a
    file that exists there; the same request for a real asset does fetch it, so a traversal would show."""
    assets = Path(swagger_ui_path)
    status, body = api_once.raw_get("/docs/assets/swagger-ui.css")
    assert (status, body) == (200, (assets / "swagger-ui.css").read_bytes())
    target = assets.parent.parent / "__init__.py"  # swagger_ui_bundle's own, two levels up from the assets
    secret = target.read_bytes()
    assert len(secret) > 20
    for escape in (
        "../../__init__.py",
        "..%2F..%2F__init__.py",
        "%2E%2E%2F%2E%2E%2F__init__.py",
        "..%5C..%5C__init__.py",
    ):
        status, body = api_once.raw_get(f"/docs/assets/{escape}")
        assert status == 404, escape
        assert secret not in body, escape
