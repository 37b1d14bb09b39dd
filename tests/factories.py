"""Test data: users with tokens, codes and referrals made through the API itself; code entries for the cache."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from referral.clock import utcnow
from referral.services.models import CodeInfo
from tests.live import LiveClient

Client = LiveClient | httpx.Client  # a live app, or a client of a server the test started


def random_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.com"


def random_password() -> str:
    return f"pw-{secrets.token_urlsafe(12)}"


def register(api: Client, email: str, password: str) -> httpx.Response:
    return api.post("/user/register", json={"email": email, "password": password})


def login(api: Client, email: str, password: str) -> httpx.Response:
    return api.post("/user/auth", json={"email": email, "password": password})


def token_of(api: Client, email: str, password: str) -> str:
    """A fresh token of a registered user."""
    answer = login(api, email, password)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def code_info(expires_in: timedelta = timedelta(days=1), name: str = "CODE-1") -> CodeInfo:
    """User 1's code `name`, expiring in `expires_in` (whole seconds, as a cache entry keeps it)."""
    return CodeInfo(1, name, (utcnow() + expires_in).replace(microsecond=0))


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
    def __init__(self, api: Client) -> None:
        self.api = api

    def user(self, email: str | None = None, password: str | None = None) -> User:
        email = email or random_email()
        password = password or random_password()
        registered = register(self.api, email, password)
        assert registered.status_code == 201, registered.text
        return User(registered.json()["user_id"], email.strip().lower(), password, token_of(self.api, email, password))

    def code(self, user: User, day: int = 7, code: str | None = None, **more: Any) -> dict[str, Any]:
        """update_code for `user`; `more` goes into the body as is (`max_uses=5`, `max_uses=None`)."""
        body: dict[str, Any] = {"day": day} | ({"code": code} if code else {}) | more
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
