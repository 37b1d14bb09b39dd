"""/user/register, /user/auth and /user/token (OAuth 2.0 password grant)."""

from __future__ import annotations

import jwt
import pytest

from referral.api.contract import normalise_email
from tests.conftest import TEST_SECRET
from tests.factories import login, random_email, register
from tests.problems import assert_problem


class TestRegister:
    def test_returns_the_new_user_id(self, api):
        first = register(api, random_email(), "a-fine-passphrase")
        second = register(api, random_email(), "a-fine-passphrase")
        assert first.status_code == 201
        assert first.json() == {"user_id": 1}
        assert second.json() == {"user_id": 2}

    def test_email_is_normalised(self, api):
        assert register(api, "  Mixed.Case@Example.COM ", "a-fine-passphrase").status_code == 201
        assert login(api, "mixed.case@example.com", "a-fine-passphrase").status_code == 200

    @pytest.mark.parametrize("variant", ["taken@example.com", "TAKEN@example.com", " Taken@Example.com "])
    def test_email_taken_case_insensitively(self, api, variant):
        assert register(api, "taken@example.com", "a-fine-passphrase").status_code == 201
        body = assert_problem(register(api, variant, "another-fine-passphrase"), 409)
        assert "already exists" in body["detail"]

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            *(
                ({"email": email, "password": "a-fine-passphrase"}, "email")
                for email in ("not-an-email", "a@b", "x" * 250 + "@example.com", "", 12, None)
            ),
            ({"password": "a-fine-passphrase"}, "email"),
            *(
                ({"email": "ok@example.com", "password": password}, "password")
                for password in ("short", "1234567", "x" * 257, 12345678, ["a-fine-passphrase"])
            ),
            ({"email": "ok@example.com"}, "password"),
        ],
    )
    def test_invalid_input_is_422_and_creates_nothing(self, api, payload, field):
        body = assert_problem(api.post("/user/register", json=payload), 422)
        assert field in body["errors"]
        assert register(api, random_email(), "a-fine-passphrase").json() == {"user_id": 1}  # no user before it

    def test_lone_surrogate_in_password_is_422(self, api):
        raw = b'{"email": "ok@example.com", "password": "\\ud800password"}'
        body = assert_problem(api.post("/user/register", content=raw), 422)
        assert "password" in body["errors"]


def test_emails_are_normalised_by_email_validator_and_refusals_say_why():
    assert normalise_email(" One@Kept.Example.COM") == "one@kept.example.com"
    assert normalise_email("ann@BÜCHER.de") == "ann@bücher.de"
    for _ in range(2):  # a refusal is not kept as an answer
        for refused in ("x@bad..example.com", "x@printer.local", "x@-dash.example.com"):
            with pytest.raises(ValueError, match="is not a valid email address"):
                normalise_email(refused)


class TestLongAndUnicodePasswords:
    @pytest.mark.parametrize(
        "password",
        [("qzmvxkjw" * 32)[:length] for length in (8, 72, 256)] + ["a1" * 50, "пароль-密码-🔑-ünïcode"],
        ids=["length 8", "length 72", "length 256", "hundred characters", "non-ASCII"],
    )
    def test_length_bounds_and_unicode_are_accepted(self, api, password):
        email = random_email()
        assert register(api, email, password).status_code == 201
        assert login(api, email, password).status_code == 200

    def test_no_truncation_at_72_bytes(self, api):
        email = random_email()
        password = "x" * 72 + "-the-real-ending"
        assert register(api, email, password).status_code == 201
        assert login(api, email, "x" * 72 + "-another-ending").status_code == 401
        assert login(api, email, "x" * 72).status_code == 401
        assert login(api, email, password).status_code == 200


class TestAuth:
    def test_returns_a_token_for_the_user(self, api, make):
        user = make.user()
        answer = login(api, user.email, user.password)
        assert answer.status_code == 200
        body = answer.json()
        assert body["user_id"] == user.id
        claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"], issuer="referral", audience="referral")
        assert claims["sub"] == str(user.id)
        assert claims["aud"] == "referral"
        assert claims["ver"] == 0
        assert claims["exp"] - claims["iat"] == 86_400
        assert answer.headers["cache-control"] == "no-store"

    def test_login_is_case_insensitive_on_email(self, api, make):
        user = make.user()
        assert login(api, user.email.upper(), user.password).status_code == 200

    def test_wrong_password_and_unknown_email_answer_alike(self, api, make):
        user = make.user()
        wrong = login(api, user.email, "wrong-password")
        unknown = login(api, random_email(), "wrong-password")
        assert_problem(wrong, 401)
        assert_problem(unknown, 401)
        assert wrong.json() == unknown.json()
        assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"email": "a@example.com"},
            {"password": "a-fine-passphrase"},
            {"email": "bad", "password": "a-fine-passphrase"},
        ],
    )
    def test_incomplete_credentials_are_422(self, api, payload):
        assert_problem(api.post("/user/auth", json=payload), 422)


GRANT = {"grant_type": "password", "username": "a@example.com", "password": "a-fine-passphrase"}  # well-formed


class TestToken:
    def form(self, api, **fields):
        return api.post("/user/token", data=fields)

    def test_password_grant_issues_a_bearer_token(self, api, make):
        user = make.user()
        answer = self.form(api, grant_type="password", username=user.email, password=user.password)
        assert answer.status_code == 200
        body = answer.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 86_400
        assert answer.headers["cache-control"] == "no-store"
        protected = api.post(
            "/refer/update_code", json={"day": 3}, headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert protected.status_code == 201

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({**GRANT, "username": "nobody@example.com"}, "invalid_grant"),
            ({**GRANT, "username": "not-an-email"}, "invalid_grant"),
            ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
            ({"grant_type": "password", "username": "a@example.com"}, "invalid_request"),
            ({"username": "a@example.com", "password": "a-fine-passphrase"}, "invalid_request"),
            ({}, "invalid_request"),
            ({"grant_type": "password", "password": "a-fine-passphrase"}, "invalid_request"),
            ({**GRANT, "password": "p" * 4097}, "invalid_grant"),
            ({**GRANT, "username": "a@" + "b" * 250 + ".com", "password": "a-fine"}, "invalid_grant"),
        ],
    )
    def test_errors_follow_rfc_6749(self, api, fields, error):
        answer = self.form(api, **fields)
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        assert body["error"] == error
        assert body["error_description"]

    def test_wrong_password_is_invalid_grant(self, api, make):
        user = make.user()
        answer = self.form(api, grant_type="password", username=user.email, password="wrong-password")
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_grant"

    def test_json_body_is_invalid_request(self, api, make):
        user = make.user()
        answer = api.post(
            "/user/token", json={"grant_type": "password", "username": user.email, "password": user.password}
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_request"
