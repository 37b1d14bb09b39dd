"""Test data made through the API itself: users with tokens, codes, referrals."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from tests.live import LiveClient


def random_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.com"


def random_password() -> str:
    return f"pw-{secrets.token_urlsafe(12)}"


@dataclass
class User:
    id: int
    email: str
    password: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        """The seed's header form: `authorization: <jwt>`."""
        return {"authorization": self.token}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Factory:
    def __init__(self, api: LiveClient) -> None:
        self.api = api

    def user(self, email: str | None = None, password: str | None = None) -> User:
        email = email or random_email()
        password = password or random_password()
        registered = self.api.post("/user/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        login = self.api.post("/user/auth", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        return User(registered.json()["user_id"], email.strip().lower(), password, login.json()["token"])

    def code(self, user: User, day: int = 7, code: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"day": day} | ({"code": code} if code else {})
        answer = self.api.post("/refer/update_code", json=body, headers=user.auth)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def referral(self, code: str, email: str | None = None, password: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email or random_email(), "code": code}
        if password:
            body["password"] = password
        answer = self.api.post("/referals/register", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()
