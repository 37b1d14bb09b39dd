"""Bad input of every kind: always a clear 4xx JSON answer, never a 5xx or a traceback.

What is refused before any query (unknown paths and methods, bad tokens, a huge body) is checked once,
not per backend (`api_once`)."""

from __future__ import annotations

import asyncio

import pytest

from tests.problems import assert_problem

JSON_ENDPOINTS = [
    ("POST", "/user/register"),
    ("POST", "/user/auth"),
    ("POST", "/refer/update_code"),
    ("PUT", "/refer/update_code"),
    ("POST", "/refer/getcode"),
    ("GET", "/refer/getcode"),
    ("POST", "/referals/register"),
    ("POST", "/referals/list"),
    ("GET", "/referals/list"),
]

GARBAGE_BODIES = {
    "truncated json": (b'{"email": "a@example.com", ', 400),
    "not json": (b"email=a@example.com", 400),
    "bad utf-8": (b'{"email": "\xff\xfe@example.com", "password": "a-fine-passphrase"}', 400),
    "huge integer": (b'{"day": 1' + b"0" * 5000 + b', "user_id": 1' + b"0" * 5000 + b"}", 400),
    "deep nesting": (b"[" * 30_000 + b"]" * 30_000, 400),
    "array": (b'["a@example.com", "a-fine-passphrase"]', 422),
    "string": (b'"a@example.com"', 422),
    "number": (b"42", 422),
    "null": (b"null", 422),
    "empty object": (b"{}", 422),
    "infinity": (b'{"day": 1e400, "email": 1e400, "user_id": 1e400, "password": 1e400, "code": 1e400}', 422),
    "nested types": (b'{"day": {"a": 1}, "email": {"a": 1}, "user_id": [], "password": {}, "code": []}', 422),
    "nul bytes": (b'{"email": "a\\u0000@example.com", "password": "pass\\u0000word", "code": "AB\\u0000CD"}', 422),
    "empty": (b"", 422),
}


@pytest.fixture
def token(make):
    return make.user().token


@pytest.mark.parametrize("case", list(GARBAGE_BODIES))
def test_garbage_bodies_get_a_problem_answer_everywhere(api, token, case):
    body, status = GARBAGE_BODIES[case]
    for method, path in JSON_ENDPOINTS:
        answer = api.request(method, path, content=body, headers={"authorization": token})
        assert_problem(answer, status)


def test_body_over_the_limit_is_413(api, token):
    big = b'{"email": "' + b"a" * 100_000 + b'@example.com", "password": "a-fine-passphrase"}'
    assert_problem(api.post("/user/register", content=big), 413)


def test_twenty_megabytes_are_refused_before_being_read(api_once):
    async def send_huge_body() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", api_once.port)
        head = (
            "POST /user/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {20 * 1024 * 1024}\r\n\r\n"
        )
        writer.write(head.encode() + b"{" + b" " * 65_536)
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        finally:
            writer.close()

    answer = api_once.run(send_huge_body())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_unknown_path_is_404_json(api_once):
    assert_problem(api_once.get("/no/such/path"), 404)
    assert_problem(api_once.post("/user/registerx", json={}), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/user/register"),
        ("DELETE", "/user/auth"),
        ("PATCH", "/refer/update_code"),
        ("GET", "/refer/delete"),
        ("PUT", "/referals/register"),
        ("DELETE", "/referals/list"),
    ],
)
def test_wrong_method_is_405_json(api_once, method, path):
    answer = api_once.request(method, path)
    assert_problem(answer, 405)
    assert "allow" in answer.headers


@pytest.mark.parametrize(
    "query",
    [
        "email=%ff%fe%fd",
        "email=%00",
        "email=" + "a" * 5000,
        "email=a@example.com&email=b@example.com",
        "email[]=x",
    ],
)
def test_odd_query_strings_are_4xx(api, query):
    answer = api.get(f"/refer/getcode?{query}")
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "x" * 5000, "Bearer \u00e9\u00e9"],
)
def test_bad_authorization_headers_are_401(api_once, header):
    answer = api_once.request(
        "POST", "/refer/update_code", json={"day": 3}, headers={"authorization": header.encode("latin-1")}
    )
    assert_problem(answer, 401)
