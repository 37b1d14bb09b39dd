"""Serving for real: `python -m referral` and `sanic referral.app:create_app --factory`, no .env."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import SQLiteTemplate
from tests.support import free_port, server_env, start_server, stop_server, wait_until_healthy

SANIC = Path(sys.executable).parent / "sanic"


@pytest.fixture
def serve(sqlite_template: SQLiteTemplate, tmp_path: Path) -> Iterator:
    processes: list[subprocess.Popen] = []

    def start(command: list[str], *, port: int | None = None, **env: str) -> str:
        """No SECRET_KEY: the workers share the one the main process generates."""
        port = port or free_port()
        url = sqlite_template.fresh_url(tmp_path)
        environment = server_env(DATABASE_URL=url, PORT=str(port), SECRET_KEY=None, **env)
        process = start_server(command, cwd=tmp_path, env=environment)
        processes.append(process)
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, process, seconds=20)
        return base_url

    yield start
    for process in processes:
        stop_server(process, seconds=5)


def test_python_dash_m_referral_serves_with_two_workers_sharing_a_generated_secret(serve):
    base_url = serve([sys.executable, "-m", "referral"], WORKERS="2")
    credentials = {"email": "worker@example.com", "password": "a-fine-passphrase"}
    assert httpx.post(f"{base_url}/user/register", json=credentials).status_code == 201
    token = httpx.post(f"{base_url}/user/auth", json=credentials).json()["token"]
    for _ in range(12):  # new connections land on either worker: each must accept the other's token
        with httpx.Client() as client:
            answer = client.post(f"{base_url}/refer/update_code", json={"day": 2}, headers={"authorization": token})
        assert answer.status_code in (200, 201), answer.text


def test_sanic_cli_factory(serve):
    port = free_port()
    base_url = serve([str(SANIC), "referral.app:create_app", "--factory", "--port", str(port)], port=port)
    assert httpx.get(f"{base_url}/docs/openapi.json").status_code == 200
