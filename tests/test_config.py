"""Settings: environment over .env over defaults; DB_* to a URL; checks on bad values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from referral.config import ConfigError, load_settings, read_environment, warn_if_insecure


def test_defaults_need_no_environment():
    settings = load_settings(env={})
    assert settings.service_name == "referral"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.database_url == "sqlite+aiosqlite:///referral.db"
    assert settings.exp_token_day == 1
    assert settings.bcrypt_rounds == 12
    assert settings.code_cache_ttl == 60
    assert settings.rate_limit is True
    assert settings.rate_limit_login == "10/15minutes"
    assert settings.rate_limit_ip == "120/minute"
    assert settings.redis_url is None


def test_missing_secret_key_is_random_shared_and_warned_about(caplog):
    first, second = load_settings(env={}), load_settings(env={})
    assert first.secret_key_is_random
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key  # every worker of one start signs alike

    with caplog.at_level(logging.WARNING, logger="referral.config"):
        warn_if_insecure(first)
    assert "SECRET_KEY is not set" in caplog.text


def test_numeric_secret_key_stays_text():
    settings = load_settings(env={"SECRET_KEY": "12345678901234567890123456789012"})
    assert settings.secret_key == "12345678901234567890123456789012"
    assert not settings.secret_key_is_random


def test_postgres_from_db_variables():
    settings = load_settings(
        env={
            "DB_HOST": "db.internal",
            "DB_PORT": "6543",
            "DB_USER": "app",
            "DB_PASSW": "p@ss:w/rd%",
            "DB_NAME": "refs",
            "DB_SCHEMA": "referral",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://app:p%40ss%3Aw%2Frd%25@db.internal:6543/refs"
    assert settings.db_schema == "referral"
    assert not settings.is_sqlite


def test_sqlite_file_from_db_name_when_no_host():
    assert load_settings(env={"DB_NAME": "/data/refs.db"}).database_url == "sqlite+aiosqlite:////data/refs.db"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql://u@h:5/d", "postgresql+asyncpg://u@h:5/d"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
    ],
)
def test_database_url_overrides_db_variables(given, used):
    assert load_settings(env={"DATABASE_URL": given, "DB_HOST": "ignored"}).database_url == used


@pytest.mark.parametrize(
    "env",
    [
        {"PORT": "eighty"},
        {"EXP_TOKEN_DAY": "0"},
        {"BCRYPT_ROUNDS": "3"},
        {"BCRYPT_ROUNDS": "32"},
        {"RATE_LIMIT": "maybe"},
        {"DATABASE_URL": "mysql://u@h/d"},
        {"DATABASE_URL": "not a url"},
        {"DB_HOST": "h", "DB_SCHEMA": 'x"; DROP SCHEMA public; --'},
    ],
)
def test_bad_values_are_refused_at_start(env):
    with pytest.raises(ConfigError):
        load_settings(env=env)


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("SERVICE_NAME = from-dotenv\nPORT=9000\nEXP_TOKEN_DAY=3\n")
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    monkeypatch.delenv("EXP_TOKEN_DAY", raising=False)
    settings = load_settings(env=read_environment(dotenv))
    assert settings.service_name == "from-dotenv"
    assert settings.port == 9100
    assert settings.exp_token_day == 3
    assert settings.token_lifetime_seconds == 3 * 86_400


def test_missing_dotenv_is_fine(tmp_path: Path):
    assert "PATH" in read_environment(tmp_path / "absent.env")
