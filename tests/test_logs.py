"""Logs: one access line per request, request ids, security events, text and JSON, and nothing secret.

The lines are read where an operator reads them: what the service's handler writes to stderr (the
test captures it), formatted as LOG_FORMAT says; and, for the real process, `python -m referral`'s own
stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sanic.exceptions import RequestCancelled

from referral import logs
from referral.api.access import VALID_REQUEST_ID
from referral.api.problems import ProblemErrorHandler
from referral.app import ReferralApp, create_app
from referral.config import Settings
from referral.logs import EMAIL_HASH_LENGTH, email_hash, scrub
from tests.conftest import TEST_SECRET
from tests.databases import SQLiteTemplate
from tests.factories import Factory, User, random_email
from tests.live import LiveClient
from tests.support import running_server, server_env

pytestmark = pytest.mark.sqlite_only

TEXT_ACCESS = re.compile(
    r"^\S+Z \[[^\]]+\] INFO referral\.access: (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) "
    r"(?P<ms>\d+\.\d\d)ms request_id=(?P<rid>[A-Za-z0-9._:-]+)(?: user_id=(?P<user>\d+))?$"
)
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def access_lines(lines: list[str]) -> list[re.Match[str]]:
    return [match for line in lines if (match := TEXT_ACCESS.match(line))]


def password_hash_of(api: LiveClient, email: str) -> str:
    return api.run(api.app.ctx.db.fetch_val('SELECT password_hash FROM "user" WHERE email = :e', {"e": email}))


def test_one_access_line_per_request_and_nothing_secret_in_any_line(api, make, capsys):
    owner = make.user()
    make.code(owner)
    capsys.readouterr()
    other = random_email()
    password = "a-long-and-private-passphrase"
    sent: list[tuple[str, str, int, int | None]] = []  # method, path, status, user id when authenticated

    def send(method: str, url: str, status: int, user: User | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **(user.bearer if user else {})}
        answer = api.request(method, url, headers=headers, **kwargs)
        assert answer.status_code == status, answer.text
        sent.append((method, url.split("?")[0], status, user.id if user else None))
        return answer

    user_id = send("POST", "/user/register", 201, json={"email": other, "password": password}).json()["user_id"]
    token = send("POST", "/user/auth", 200, json={"email": other, "password": password}).json()["token"]
    registered = User(user_id, other, password, token)
    send("POST", "/user/auth", 401, json={"email": other, "password": "the wrong passphrase"})
    send("POST", "/user/token", 200, data={"grant_type": "password", "username": other, "password": password})
    send("GET", f"/refer/getcode?email={owner.email}", 200)
    send("GET", f"/refer/getcode?email={other}", 404)
    send("POST", "/refer/getcode", 200, json={"email": owner.email})
    send("POST", "/refer/update_code", 201, registered, json={"day": 3})
    send("GET", f"/referals/list?user_id={registered.id}", 200, registered)
    send("GET", f"/referals/list?user_id={owner.id}", 403, registered)
    new_password = "another-long-private-passphrase"
    change = {"current_password": password, "new_password": new_password}
    changed = send("POST", "/user/password", 200, registered, json=change)
    registered.token = changed.json()["token"]
    send("POST", "/user/logout", 204, registered)
    send("POST", "/user/logout", 401, headers={"Authorization": f"Bearer {registered.token}"})
    send("GET", "/no/such/page?email=" + other, 404)
    send("DELETE", "/user/register", 405)

    lines = stderr_lines(capsys)
    found = [
        (m["method"], m["path"], int(m["status"]), int(m["user"]) if m["user"] else None) for m in access_lines(lines)
    ]
    assert found == sent
    for match in access_lines(lines):
        assert VALID_REQUEST_ID.fullmatch(match["rid"])
        assert float(match["ms"]) < 30_000
    secrets_ = {other, owner.email, password, new_password, token, registered.token, owner.token}
    secrets_ |= {password_hash_of(api, other), password_hash_of(api, owner.email), other.split("@")[0]}
    for line in lines:
        assert "?" not in line, line
        for secret in secrets_:
            assert secret not in line, (secret, line)


def test_control_characters_from_the_request_line_are_escaped_in_text_lines(serve_app, capsys):
    """A method with an ESC sequence (Sanic takes any method token) would rewrite the terminal showing the log."""
    served = serve_app()

    async def send_raw() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"G\x1b[2JET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return answer

    capsys.readouterr()
    assert served.run(send_raw()).startswith(b"HTTP/1.1 404 ")
    [line] = [line for line in stderr_lines(capsys) if "referral.access" in line]
    assert "\x1b" not in line
    assert "INFO referral.access: G\\u001b[2JET /x 404 " in line


def test_text_lines_escape_control_characters_as_json_does_and_keep_the_tracebacks_lines():
    formatter = logs.TextFormatter()
    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError:
        record = logging.LogRecord("referral.x", logging.ERROR, "", 0, "line\nforged\r\x07", (), sys.exc_info())
    first, *traceback = formatter.format(record).split("\n")
    assert first.endswith("ERROR referral.x: line\\nforged\\r\\u0007")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: bad \\u001b[2J value"


def test_access_line_off_keeps_the_request_id(serve_app, capsys):
    quiet = serve_app(access_log=False)
    capsys.readouterr()
    answer = quiet.get("/health")
    assert answer.status_code == 200
    assert GENERATED_ID.fullmatch(answer.headers["x-request-id"])
    assert not access_lines(stderr_lines(capsys))
    assert quiet.app.config.ACCESS_LOG is False  # Sanic's own, which would log the query string, stays off


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        *((given, True) for given in ("abc-123", "req:2026.12.03_a-B", "x" * 128)),
        *((given, False) for given in ("x" * 129, "", "has space", "<script>", "tab\there", "ünïcode", "a,b")),
    ],
)
def test_request_id_is_echoed_only_when_well_formed(api, given, echoed):
    answer = api.get("/health", headers={"X-Request-ID": given.encode("utf-8")})
    assert answer.status_code == 200
    if echoed:
        assert answer.headers["x-request-id"] == given
    else:
        assert GENERATED_ID.fullmatch(answer.headers["x-request-id"])


def test_every_answer_carries_a_request_id_errors_included(api):
    generated = set()
    for answer in (
        api.get("/health"),
        api.get("/no/such/page"),
        api.request("PATCH", "/health"),
        api.post("/user/register", content=b"{not json"),
        api.post("/user/register", json={"email": "nope"}),
        api.post("/refer/update_code", json={"day": 1}),
        api.post("/user/register", content=b"x" * 70_000, headers={"content-type": "application/json"}),
        api.get("/refer/getcode", params={"email": "x" * 20_000 + "@example.com"}),  # 413 before routing
        api.get("/docs/openapi.json"),
        api.get("/metrics"),
    ):
        assert GENERATED_ID.fullmatch(answer.headers.get("x-request-id", "")), (answer.status_code, answer.headers)
        generated.add(answer.headers["x-request-id"])
    assert len(generated) == 10
    for status, answer in (
        (404, api.get("/nope", headers={"X-Request-ID": "trace-404"})),
        (413, api.post("/user/auth", content=b"x" * 70_000, headers={"X-Request-ID": "trace-413"})),
    ):
        assert answer.status_code == status
        assert answer.headers["x-request-id"] == f"trace-{status}"


def test_the_413_before_routing_is_logged_with_its_id(api, capsys):
    capsys.readouterr()
    answer = api.get("/refer/getcode", params={"email": "x" * 20_000 + "@example.com"})
    assert answer.status_code == 413
    [line] = access_lines(stderr_lines(capsys))
    assert (line["status"], line["rid"]) == ("413", answer.headers["x-request-id"])
    assert "x" * 100 not in line.string


# -- security events ---------------------------------------------------------------------------------


def security_events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "referral.security" and r.fields["event"] == event]


def test_email_hash_is_keyed_stable_and_not_a_bare_digest():
    email = "alice@example.com"
    first = email_hash(email, TEST_SECRET)
    assert first == email_hash(email, TEST_SECRET)
    assert re.fullmatch(f"[0-9a-f]{{{EMAIL_HASH_LENGTH}}}", first)
    assert first != email_hash("bob@example.com", TEST_SECRET)
    assert first != email_hash(email, TEST_SECRET + "-other")
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.blake2b):
        assert not digest(email.encode()).hexdigest().startswith(first)


def test_login_failures_and_lock_out_are_logged_with_a_keyed_hash_of_the_email(serve_app, caplog, capsys):
    limited = serve_app(rate_limit=True, rate_limit_login="2/minute", rate_limit_ip="100/minute")
    email, other_email = random_email(), random_email()
    Factory(limited).user(email=email)
    caplog.set_level(logging.INFO, logger="referral")
    for status in (401, 401, 429):
        answer = limited.post("/user/auth", json={"email": email, "password": "not-the-password"})
        assert answer.status_code == status
    limited.post("/user/auth", json={"email": other_email, "password": "not-the-password"})

    failed, locked = security_events(caplog, "login_failed"), security_events(caplog, "login_locked_out")
    hashed = email_hash(email, TEST_SECRET)
    assert [event["email_hash"] for event in failed] == [hashed, hashed, email_hash(other_email, TEST_SECRET)]
    assert [event["email_hash"] for event in locked] == [hashed]
    assert all(event["client"] == "127.0.0.1" and event["request_id"] for event in failed + locked)
    output = capsys.readouterr().err
    assert f"event=login_locked_out email_hash={hashed} client=127.0.0.1" in output
    assert email not in output
    assert email.split("@")[0] not in output


def test_token_refusals_logout_password_change_and_403_are_logged(api, make, caplog):
    caplog.set_level(logging.INFO, logger="referral")
    user, other = make.user(), make.user()
    api.post("/refer/update_code", json={"day": 1})
    api.post("/refer/update_code", json={"day": 1}, headers={"Authorization": "Bearer not.a.jwt"})
    assert api.get("/referals/list", params={"user_id": other.id}, headers=user.bearer).status_code == 403
    wrong = {"current_password": "not-the-current-one", "new_password": "a-brand-new-passphrase"}
    assert api.post("/user/password", json=wrong, headers=user.bearer).status_code == 403
    right = {"current_password": user.password, "new_password": "a-brand-new-passphrase"}
    answer = api.post("/user/password", json=right, headers=user.bearer)
    assert answer.status_code == 200
    assert api.post("/user/logout", headers=user.bearer).status_code == 401  # revoked by the change
    assert api.post("/user/logout", headers={"Authorization": f"Bearer {answer.json()['token']}"}).status_code == 204

    reasons = [event["reason"] for event in security_events(caplog, "token_refused")]
    assert reasons[0] == "missing"
    assert reasons[1].startswith("invalid: ")
    assert reasons[2] == "revoked"
    assert [(e["reason"], e["user_id"]) for e in security_events(caplog, "forbidden")] == [
        ("forbidden", user.id),
        ("wrong-password", user.id),
    ]
    assert [e["user_id"] for e in security_events(caplog, "password_changed")] == [user.id]
    assert [e["user_id"] for e in security_events(caplog, "logout")] == [user.id]
    for record in caplog.records:
        for secret in (user.token, user.password, answer.json()["token"], user.email):
            assert secret not in record.getMessage()
            assert secret not in str(getattr(record, "fields", ""))


def test_scrub_removes_what_must_never_be_logged():
    line = (
        "GET /refer/getcode?email=alice@example.com failed for bob.smith+x@mail.example.org with "
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl and "
        "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
    )
    scrubbed = scrub(line)
    assert scrubbed == "GET /refer/getcode?<query> failed for <email> with <token> and <password hash>"


# -- formats -----------------------------------------------------------------------------------------


async def broken(email: str) -> None:
    """A code lookup that fails as a bug would."""
    raise RuntimeError("boom")


def test_json_format_is_one_object_per_line_with_tracebacks_as_a_field(serve_app, capsys, monkeypatch):
    shipped = serve_app(log_format="json")
    capsys.readouterr()
    monkeypatch.setattr(shipped.app.ctx.codes, "find_by_email", broken)
    answer = shipped.get("/refer/getcode", params={"email": "alice@example.com"}, headers={"X-Request-ID": "r-500"})
    assert answer.status_code == 500
    assert "Traceback" not in answer.text
    assert "boom" not in answer.text
    shipped.get("/health")

    documents = [json.loads(line) for line in stderr_lines(capsys)]
    error = next(d for d in documents if d["level"] == "ERROR")
    assert error["logger"] == "referral.errors"
    assert error["message"] == "unexpected error on GET /refer/getcode"
    assert error["request_id"] == "r-500"
    assert "Traceback (most recent call last)" in error["exception"]
    assert "RuntimeError: boom" in error["exception"]
    accesses = [d for d in documents if d["logger"] == "referral.access"]
    assert [(d["method"], d["path"], d["status"]) for d in accesses] == [
        ("GET", "/refer/getcode", 500),
        ("GET", "/health", 200),
    ]
    assert accesses[0]["request_id"] == "r-500"
    assert all(isinstance(d["duration_ms"], float) and "user_id" not in d for d in accesses)
    assert all({"time", "level", "logger", "message", "pid", "worker"} <= set(d) for d in documents)
    assert "alice@example.com" not in "\n".join(json.dumps(d) for d in documents)


def test_text_format_keeps_the_traceback_in_the_log(api, capsys, monkeypatch):
    monkeypatch.setattr(api.app.ctx.codes, "find_by_email", broken)
    capsys.readouterr()
    assert api.get("/refer/getcode", params={"email": "alice@example.com"}).status_code == 500
    output = capsys.readouterr().err
    assert "ERROR referral.errors: unexpected error on GET /refer/getcode request_id=" in output
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: boom" in output
    assert "alice@example.com" not in output


# -- the real process -----------------------------------------------------------------------------


def test_quiet_errors_of_sanic_are_not_logged_as_unexpected(caplog):
    """A client that goes away mid-request (RequestCancelled, quiet) is no error of ours: not logged."""
    request = SimpleNamespace(method="GET", path="/refer/getcode", app=SimpleNamespace(config={}))
    ProblemErrorHandler.log(request, RequestCancelled())
    assert not [r for r in caplog.records if r.name == "referral.errors"]
    ProblemErrorHandler.log(request, RuntimeError("boom"))
    [logged] = [r for r in caplog.records if r.name == "referral.errors"]
    assert logged.getMessage() == "unexpected error on GET /refer/getcode"
    request.app.config["NOISY_EXCEPTIONS"] = True
    ProblemErrorHandler.log(request, RequestCancelled())
    assert len([r for r in caplog.records if r.name == "referral.errors"]) == 2


def test_python_dash_m_referral_logs_json_lines_only_with_no_email(sqlite_template: SQLiteTemplate, tmp_path: Path):
    log = tmp_path / "server.log"
    env = server_env(DATABASE_URL=sqlite_template.fresh_url(tmp_path), LOG_FORMAT="json")
    email = random_email()
    with running_server(env, cwd=tmp_path, log=log) as (base_url, _):
        credentials = {"email": email, "password": "a-fine-passphrase"}
        assert httpx.post(f"{base_url}/user/register", json=credentials).status_code == 201
        assert httpx.post(f"{base_url}/user/auth", json={**credentials, "password": "wrong-one"}).status_code == 401
        assert httpx.get(f"{base_url}/refer/getcode", params={"email": email}).status_code == 404
    lines = log.read_text().splitlines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, "lines that are not JSON:\n" + "\n".join(not_json)
    documents = [json.loads(line) for line in lines]
    accesses = [d for d in documents if d["logger"] == "referral.access"]
    assert [(d["method"], d["path"], d["status"]) for d in accesses][-3:] == [
        ("POST", "/user/register", 201),
        ("POST", "/user/auth", 401),
        ("GET", "/refer/getcode", 404),
    ]
    [failed] = [d for d in documents if d.get("event") == "login_failed"]
    assert failed["email_hash"] == email_hash(email, TEST_SECRET)
    assert failed["request_id"] == accesses[-2]["request_id"]
    assert {d["logger"].split(".")[0] for d in documents} >= {"sanic", "referral"}
    assert email not in log.read_text()


def test_no_secret_reaches_a_line_through_an_app_that_is_not_served(settings: Settings, capsys):
    app: ReferralApp = create_app(settings=settings)
    logging.getLogger("referral.errors").error("failed for alice@example.com on /refer/getcode?email=alice@example.com")
    output = capsys.readouterr().err
    assert "alice@example.com" not in output
    assert "/refer/getcode?<query>" in output
    assert app.config.ACCESS_LOG is False
