"""Fuzz the live service from its own OpenAPI document with schemathesis, on SQLite or PostgreSQL.

    .venv/bin/python -m tests.schemathesis.run --backend sqlite|postgres [--max-examples N] [--seed S]

Starts `python -m referral` on a free loopback port against a fresh, migrated database (SQLite: a
temporary file; PostgreSQL: a throwaway database on TEST_POSTGRES_URL's server, dropped after),
registers a user and signs in so protected operations are exercised, then runs every operation with
every default check, positive and negative inputs, a fixed seed. Exits with schemathesis's status.

The server runs with BCRYPT_ROUNDS=4 (hashing at cost 12 would spend most of the run in bcrypt) and
RATE_LIMIT=off (thousands of requests from one address would otherwise be answered 429 after the
first 120 a minute, and the operations behind the limiter would go untested).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.factories import Factory
from tests.support import ROOT, ThrowawayPostgres, free_port, running_server

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
BIN = Path(sys.executable).parent
# Also in schemathesis.toml, as values the fuzzer mixes in; a throwaway account of a throwaway database.
FUZZ_EMAIL = "fuzz-user@example.com"
FUZZ_PASSWORD = "fuzz-password-not-secret"
# The integration key of the run: the fuzzer reaches /integration/* past the 401 with it.
FUZZ_INTEGRATION_KEY = "fuzz-integration-key-" + secrets.token_urlsafe(24)
# User 2's code, which the fuzzer cannot touch (it has no token of user 2): referrals register with it.
REFERRER_CODE = "FUZZ-REFERRER"
# User 3 signs out and changes passwords (schemathesis.toml): user 1's token must survive the run.
SESSION_EMAIL = "fuzz-session@example.com"
# User 4 is the only account the fuzzer may delete (/user/delete, schemathesis.toml).
LEAVER_EMAIL = "fuzz-leaver@example.com"


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}"
        return
    with ThrowawayPostgres("referral_fuzz") as database:
        yield database.url


@contextmanager
def live_server(database_url: str, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "1",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "BCRYPT_ROUNDS": "4",
        "RATE_LIMIT": "off",
        "INTEGRATION_KEYS": FUZZ_INTEGRATION_KEY,  # schemathesis.toml sends it as X-API-Key
        "SANIC_NO_MOTD": "true",
        # Run from a scratch directory, so that no `.env` of the checkout changes the settings.
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    env.pop("DB_SCHEMA", None)
    subprocess.run(  # noqa: S603 - our own alembic
        [str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    log_path = workdir / "server.log"
    try:
        with running_server(env, cwd=workdir, log=log_path) as (base_url, _):
            yield base_url
    finally:
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if "Traceback" in line]
        print(f"server log: {log_path} ({len(errors)} tracebacks)")


def sign_up(base_url: str, email: str, password: str, code: str | None = None) -> tuple[int, str]:
    """Register a user, give it a code for a year, and return its id and token."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        make = Factory(client)
        user = make.user(email, password)
        make.code(user, day=365, code=code)
    return user.id, user.token


def seed_users(base_url: str) -> tuple[str, str, str]:
    """User 1 is the fuzzer's, user 2 a referrer with a code the fuzzer can use, user 3 the one that
    signs out and changes passwords, user 4 the one it may delete. Returns the tokens of users 1, 3 and 4."""
    user_id, token = sign_up(base_url, FUZZ_EMAIL, FUZZ_PASSWORD)
    assert user_id == 1, "the fuzz user must be user 1 (schemathesis.toml)"
    sign_up(base_url, "fuzz-referrer@example.com", secrets.token_urlsafe(16), REFERRER_CODE)
    _, session_token = sign_up(base_url, SESSION_EMAIL, FUZZ_PASSWORD)
    _, leaver_token = sign_up(base_url, LEAVER_EMAIL, FUZZ_PASSWORD)
    return token, session_token, leaver_token


def token_still_works(base_url: str, token: str) -> bool:
    answer = httpx.get(
        f"{base_url}/referals/list", params={"user_id": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return answer.status_code == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "150")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "20261126")))
    parser.add_argument("--report-dir", type=Path, default=None, help="keep schemathesis's JUnit report here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"referral-fuzz-{args.backend}-"))
    try:
        with fresh_database(args.backend, workdir) as database_url, live_server(database_url, workdir) as base_url:
            token, session_token, leaver_token = seed_users(base_url)
            print(f"fuzzing {base_url} on {args.backend} as {FUZZ_EMAIL} (user 1)", flush=True)
            report_dir = args.report_dir or workdir / "report"
            command = [
                str(BIN / "schemathesis"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{base_url}/docs/openapi.json",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--generation-database",
                "none",
                "--request-timeout",
                "30",
                "--report",
                os.environ.get("FUZZ_REPORTS", "junit"),
                "--report-dir",
                str(report_dir),
                "--no-color",
            ]
            print("$ " + " ".join(command), flush=True)
            env = {
                **os.environ,
                "REFERRAL_FUZZ_TOKEN": token,
                "REFERRAL_FUZZ_SESSION_TOKEN": session_token,
                "REFERRAL_FUZZ_LEAVER_TOKEN": leaver_token,
                "REFERRAL_FUZZ_INTEGRATION_KEY": FUZZ_INTEGRATION_KEY,
            }
            result = subprocess.run(command, cwd=workdir, env=env, check=False)  # noqa: S603
            print(f"schemathesis on {args.backend}: exit {result.returncode}", flush=True)
            if not token_still_works(base_url, token):
                print("the fuzz user's token was revoked during the run: protected operations went untested")
                return 1
            return result.returncode
    finally:
        if args.report_dir is None and os.environ.get("KEEP_FUZZ_DIR") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
