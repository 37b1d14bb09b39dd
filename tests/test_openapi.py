"""The OpenAPI document at /docs/openapi.json: complete, exact, and the single source of truth.

Every route the app registers is in the spec with the same methods and nothing else is; every
operation has a summary, a description, one tag, its body or query parameters, every status it
answers with a schema and an example; protected operations (and only they) are secured, and they
really answer 401 without a token. The docs pages load nothing from outside the service.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs  # a dependency of schemathesis: the JSON Schema validator it uses itself
import pytest

from referral.api.contract import CODE_PATTERN, DAY_MAX, DAY_MIN, PASSWORD_MAX, PASSWORD_MIN
from referral.api.problems import PROBLEM_CONTENT_TYPE

TAGS = {"user", "refer", "referals", "health"}
ERROR_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 429, 503}
SECURED = {
    ("POST", "/refer/update_code"),
    ("PUT", "/refer/update_code"),
    ("DELETE", "/refer/delete"),
    ("POST", "/refer/delete"),
    ("GET", "/referals/list"),
    ("POST", "/referals/list"),
    ("POST", "/user/logout"),
    ("POST", "/user/password"),
}
NO_BODY = {("DELETE", "/refer/delete"), ("POST", "/refer/delete"), ("POST", "/user/logout")}
OAUTH_ERRORS = {("POST", "/user/token", "400"), ("POST", "/user/token", "429")}
DOCS_ROUTE_PREFIXES = ("referral.openapi.", "referral.docs.")
# GET /metrics is the operators' (Prometheus' text format, internal network): served, deliberately not documented.
OPERATOR_ROUTES = ("referral.metrics.metrics",)


@pytest.fixture
def spec(api: Any) -> dict[str, Any]:
    answer = api.get("/docs/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()}


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` whose `$ref`s resolve into the spec's components."""
    return jsonschema_rs.validator_for({**schema, "components": spec["components"]}, validate_formats=True)


def app_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes:
        if route.name.startswith(DOCS_ROUTE_PREFIXES) or route.name in OPERATOR_ROUTES:
            continue
        path = "/" + re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.path)
        found.update((method, path) for method in route.methods if method not in {"HEAD", "OPTIONS"})
    return found


def test_every_route_is_in_the_spec_with_the_same_methods_and_nothing_else(api, spec):
    assert set(operations(spec)) == app_routes(api.app)


def test_the_docs_routes_stay_out_of_the_spec(api, spec):
    docs_paths = {"/" + route.path for route in api.app.router.routes if route.name.startswith(DOCS_ROUTE_PREFIXES)}
    assert "/docs/openapi.json" in docs_paths
    assert not docs_paths & set(spec["paths"])


def test_the_metrics_route_is_served_and_stays_out_of_the_spec(api, spec):
    [metrics] = [route for route in api.app.router.routes if route.name in OPERATOR_ROUTES]
    assert metrics.path == "metrics"
    assert api.get("/metrics").status_code == 200
    assert "/metrics" not in spec["paths"]


def test_every_operation_has_summary_description_tag_and_a_unique_id(spec):
    ids = []
    for key, op in operations(spec).items():
        assert op.get("summary"), key
        assert len(op.get("description", "")) > len(op["summary"]), key
        assert len(op["tags"]) == 1, key
        assert op["tags"][0] in TAGS, key
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))
    assert {tag["name"] for tag in spec["tags"]} == TAGS
    assert all(tag.get("description") for tag in spec["tags"])


def test_every_response_has_a_schema_an_example_and_errors_are_problems(spec):
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
            if int(status) >= 400 and (method, path, status) not in OAUTH_ERRORS:
                assert int(status) in ERROR_STATUSES, (method, path, status)
                assert content_type == PROBLEM_CONTENT_TYPE, (method, path, status)
                assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
                assert media["example"]["status"] == int(status)


def test_statuses_that_every_operation_can_answer_are_documented(spec):
    for key, op in operations(spec).items():
        statuses = {int(status) for status in op["responses"]}
        assert 413 in statuses, key  # any request may be too large: its body, or its URL and headers
        assert 503 in statuses, key  # the database may be down
        if key in SECURED:
            assert 401 in statuses, key
        if "requestBody" in op and op["requestBody"]["content"].get("application/json"):
            assert {400, 422} <= statuses, key


def test_request_bodies_have_required_lists_constraints_and_valid_examples(spec):
    for key, op in operations(spec).items():
        if key[0] == "GET":
            assert "requestBody" not in op, key  # a GET body has no meaning in OpenAPI
            continue
        body = op.get("requestBody")
        if body is None:
            assert key in NO_BODY, key
            continue
        assert body["required"] is True
        [(_content_type, media)] = body["content"].items()
        name = media["schema"]["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
        assert schema["required"], key
        assert set(schema["required"]) <= set(schema["properties"]), key
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
    token = op_body_schema(spec, "POST", "/user/token")
    assert token == ("application/x-www-form-urlencoded", "TokenRequest")
    assert set(schemas["TokenRequest"]["required"]) == {"grant_type", "username", "password"}


def op_body_schema(spec: dict[str, Any], method: str, path: str) -> tuple[str, str]:
    [(content_type, media)] = spec["paths"][path][method.lower()]["requestBody"]["content"].items()
    return content_type, media["schema"]["$ref"].rsplit("/", 1)[1]


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


def test_security_schemes_are_bearer_jwt_and_oauth2_password(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["BearerAuth"]["description"],
    }
    assert schemes["OAuth2Password"]["type"] == "oauth2"
    assert schemes["OAuth2Password"]["flows"] == {"password": {"tokenUrl": "/user/token", "scopes": {}}}
    assert "security" not in spec or spec["security"] == []


def test_protected_operations_and_only_they_are_secured_and_really_refuse_without_a_token(api, spec):
    for key, op in operations(spec).items():
        if key in SECURED:
            assert op["security"] == [{"BearerAuth": []}, {"OAuth2Password": []}], key
        else:
            assert "security" not in op, key
        method, path = key
        answer = api.request(method, path, json={}) if method != "GET" else api.get(path)
        assert (answer.status_code == 401) == (key in SECURED), (key, answer.status_code)


def test_a_real_error_matches_the_problem_schema(api, spec):
    answer = api.post("/user/register", json={"email": "nope", "password": "short"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    problem = spec["components"]["schemas"]["Problem"]
    assert validator(spec, problem).is_valid(answer.json())
    assert set(answer.json()["errors"]) == {"email", "password"}


def test_an_overlong_url_is_a_documented_413_that_does_not_blame_the_body(api, spec):
    answer = api.get("/refer/getcode", params={"email": "x" * 20_000 + "@example.com"})
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


def test_docs_pages_load_only_assets_of_the_service(api):
    index = api.get("/docs", follow_redirects=False)
    assert index.status_code in {301, 302, 307, 308}
    assert index.headers["location"] == "/docs/swagger"
    for page, asset in (("/docs/swagger", "/docs/assets/swagger-ui-bundle.js"), ("/docs/redoc", None)):
        answer = api.get(page)
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
        answer = api.get(f"/docs/assets/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(media_type), name
        assert len(answer.content) > 100, name


def test_redoc_comes_from_the_installed_npm_package(redoc_installed, api):
    answer = api.get("/docs/redoc")
    if "ReDoc is not installed" in answer.text:
        pytest.fail("redoc.standalone.js is missing: run `make venv`")
    bundle = api.get("/docs/assets/redoc.standalone.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert len(bundle.content) > 500_000


def test_no_cdn_oauth2_redirect_handler_and_unknown_assets_are_404(api):
    assert api.get("/docs/oauth2-redirect.html").status_code == 404
    missing = api.get("/docs/assets/../../referral.db")
    assert missing.status_code == 404
    unknown = api.get("/docs/assets/secrets.txt")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
