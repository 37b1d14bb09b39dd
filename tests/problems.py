"""Assertions on RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

import httpx


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is a problem+json of `status` with every required member; returns its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["title"]
    assert body["detail"]
    return body
