"""JWT checks on protected endpoints: every bad token is a 401 with `WWW-Authenticate: Bearer`."""

from __future__ import annotations

import base64
import json
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.conftest import TEST_SECRET
from tests.problems import assert_problem


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user_id: int, **changes) -> dict:
    now = datetime.now(UTC)
    base = {
        "sub": str(user_id),
        "ver": 0,
        "iss": "referral",
        "aud": "referral",
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def forged_tokens(user_id: int, real_token: str) -> dict[str, str]:
    header, payload, signature = real_token.split(".")
    other_payload = b64(claims_json(user_id + 1))

    def signed(user: int = user_id, **changes) -> str:
        return jwt.encode(claims(user, **changes), TEST_SECRET, algorithm="HS256")

    return {
        "malformed": "not-a-jwt",
        "two segments": f"{header}.{payload}",
        "tampered payload": f"{header}.{other_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other secret": jwt.encode(claims(user_id), "another-secret-that-is-long-enough-32b", algorithm="HS256"),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_json(user_id))}.",
        "alg HS512, right key": hs512_with_the_real_key(user_id),
        "expired": signed(exp=datetime.now(UTC) - timedelta(seconds=5)),
        "no exp": signed(exp=None),
        "no iat": signed(iat=None),
        "no sub": signed(sub=None),
        "wrong issuer": signed(iss="someone-else"),
        "non-numeric sub": signed(sub="admin"),
        "user that does not exist": signed(999_999),
        "wrong audience": signed(aud="someone-else"),
        "no aud": signed(aud=None),
        "no version": signed(ver=None),
        "older version": signed(ver=-1),
        "newer version": signed(ver=1),
        "text version": signed(ver="0"),
        "typ not JWT": jwt.encode(claims(user_id), TEST_SECRET, algorithm="HS256", headers={"typ": "at+jwt"}),
    }


def hs512_with_the_real_key(user_id: int) -> str:
    """Signed with the service's own key but another algorithm: refused because HS256 is pinned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims(user_id), TEST_SECRET, algorithm="HS512")


def claims_json(user_id: int) -> dict:
    return {"sub": str(user_id), "ver": 0, "iss": "referral", "aud": "referral", "iat": 0, "exp": 2_000_000_000}


PROTECTED = [
    ("POST", "/refer/update_code", {"day": 3}),
    ("DELETE", "/refer/delete", None),
    ("GET", "/referals/list?user_id=1", None),
]


@pytest.mark.parametrize("case", list(forged_tokens(1, "header.payload.signature")))
def test_bad_tokens_are_401(api, make, case):
    user = make.user()
    make.code(user)
    token = forged_tokens(user.id, user.token)[case]
    for method, path, body in PROTECTED:
        for headers in ({"authorization": token}, {"Authorization": f"Bearer {token}"}):
            answer = api.request(method, path, json=body, headers=headers)
            assert_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/refer/getcode", params={"email": user.email}).status_code == 200  # nothing was deleted


def test_missing_token_is_401(api):
    for method, path, body in PROTECTED:
        answer = api.request(method, path, json=body)
        assert_problem(answer, 401)
        assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["authorization", "Authorization"])
@pytest.mark.parametrize("scheme", ["", "Bearer ", "bearer ", "BEARER "])
def test_both_header_forms_are_accepted(api, make, header, scheme):
    user = make.user()
    answer = api.post("/refer/update_code", json={"day": 3}, headers={header: f"{scheme}{user.token}"})
    assert answer.status_code == 201


def test_a_token_made_like_the_forged_ones_but_right_is_accepted(api, make):
    """The control for the table above: each forged token differs from this one in its own way only."""
    user = make.user()
    token = jwt.encode(claims(user.id), TEST_SECRET, algorithm="HS256", headers={"typ": "JWT"})
    assert api.post("/refer/update_code", json={"day": 3}, headers={"authorization": token}).status_code == 201


def test_a_token_signed_with_a_changed_secret_is_refused(api, make, settings):
    user = make.user()
    resigned = jwt.encode(claims(user.id), settings.secret_key + "-rotated", algorithm="HS256")
    assert_problem(api.post("/refer/update_code", json={"day": 3}, headers={"authorization": resigned}), 401)
