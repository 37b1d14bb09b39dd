"""Settings: defaults < .env < environment < overrides; DB_* to a URL; one-line errors; documented settings
(.env.example and docs/configuration.md, and the README's essentials)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from referral.config import ConfigError, Settings, load_settings, variable_name, warn_if_insecure

ROOT = Path(__file__).resolve().parent.parent
NOT_A_RATE_LIMIT = "is not a rate limit in the limits notation (e.g. 120/minute)"


def test_defaults_need_no_environment():
    settings = load_settings(env={})
    assert settings.service_name == "referral"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.database_url == "sqlite+aiosqlite:///referral.db"
    assert settings.is_sqlite
    assert settings.db_schema is None
    assert settings.exp_token_day == 1
    assert settings.bcrypt_rounds == 12
    assert settings.code_cache_ttl == 60
    assert settings.rate_limit is True
    assert settings.rate_limit_login == "10/15minutes"
    assert settings.rate_limit_ip == "120/minute"
    assert settings.redis_url is None


def test_env_mapping_replaces_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("BCRYPT_ROUNDS", "not even a number")
    assert load_settings(env={}).port == 8000
    assert load_settings(env={"PORT": "9200"}).port == 9200


def test_missing_secret_key_is_random_shared_and_warned_about(caplog: pytest.LogCaptureFixture):
    first, second = load_settings(env={}), load_settings(env={"SECRET_KEY": ""})
    assert first.secret_key_is_random
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key  # every worker of one start signs alike
    assert first.with_overrides(port=1).secret_key_is_random

    with caplog.at_level(logging.WARNING, logger="referral.config"):
        warn_if_insecure(first)
    assert "SECRET_KEY is not set" in caplog.text


def test_numeric_secret_key_stays_text():
    settings = load_settings(env={"SECRET_KEY": "12345678901234567890123456789012"})
    assert settings.secret_key == "12345678901234567890123456789012"
    assert not settings.secret_key_is_random


def test_secrets_stay_out_of_repr():
    settings = load_settings(env={"SECRET_KEY": "k" * 40, "DATABASE_URL": "postgresql://u:hunter2@h/d"})
    assert "k" * 40 not in repr(settings)
    assert "hunter2" not in repr(settings)


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


def test_postgres_defaults_with_only_db_host():
    assert load_settings(env={"DB_HOST": "h"}).database_url == "postgresql+asyncpg://h:5432/referral"


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
def test_database_url_overrides_db_variables(given: str, used: str):
    assert load_settings(env={"DATABASE_URL": given, "DB_HOST": "ignored"}).database_url == used


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "abc"}, "PORT must be an integer from 0 to 65535, got 'abc'"),
        ({"PORT": "65536"}, "PORT must be an integer from 0 to 65535, got '65536'"),
        ({"WORKERS": "0"}, "WORKERS must be an integer of at least 1, got '0'"),
        ({"EXP_TOKEN_DAY": "0"}, "EXP_TOKEN_DAY must be an integer of at least 1, got '0'"),
        ({"BCRYPT_ROUNDS": "3"}, "BCRYPT_ROUNDS must be an integer from 4 to 31, got '3'"),
        ({"BCRYPT_ROUNDS": "32"}, "BCRYPT_ROUNDS must be an integer from 4 to 31, got '32'"),
        ({"DB_HOST": "h", "DB_PORT": "five"}, "DB_PORT must be an integer from 1 to 65535, got 'five'"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE must be an integer of at least 1, got '0'"),
        ({"CODE_CACHE_TTL": "-1"}, "CODE_CACHE_TTL must be an integer of at least 0, got '-1'"),
        ({"CODE_CACHE_SIZE": "1e3"}, "CODE_CACHE_SIZE must be an integer of at least 1, got '1e3'"),
        ({"RATE_LIMIT": "maybe"}, "RATE_LIMIT must be on or off, got 'maybe'"),
        ({"RATE_LIMIT_IP": "lots"}, f"RATE_LIMIT_IP {NOT_A_RATE_LIMIT}, got 'lots'"),
        ({"RATE_LIMIT_LOGIN": "10/fortnight"}, f"RATE_LIMIT_LOGIN {NOT_A_RATE_LIMIT}, got '10/fortnight'"),
        ({"DATABASE_URL": "mysql://u@h/d"}, "DATABASE_URL has an unsupported scheme: use postgresql or sqlite"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a URL"),  # a URL may hold a password: never echoed
        ({"DB_HOST": "h", "DB_SCHEMA": 'x"; DROP SCHEMA public; --'}, "DB_SCHEMA must be a plain identifier"),
        ({"WEBHOOK_URLS": "ftp://x.example"}, "WEBHOOK_URLS must be http(s) URLs with a host"),
        ({"WEBHOOK_URLS": "https://"}, "WEBHOOK_URLS must be http(s) URLs with a host"),
        ({"WEBHOOK_URLS": "https://x.example"}, "WEBHOOK_SECRET is required with WEBHOOK_URLS"),
        ({"WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "WEBHOOK_SECRET must be `whsec_` + base64 of at least 24"),
        ({"WEBHOOK_SECRET": "a" * 40}, "WEBHOOK_SECRET must be `whsec_` + base64 of at least 24"),  # never echoed
        ({"WEBHOOK_RETRY_SCHEDULE": "5s,1d"}, "WEBHOOK_RETRY_SCHEDULE must be delays with units (ms, s, m, h)"),
        ({"WEBHOOK_TIMEOUT": "0"}, "WEBHOOK_TIMEOUT must be a number above 0, got '0'"),
        ({"EVENT_RETENTION_DAYS": "0"}, "EVENT_RETENTION_DAYS must be an integer of at least 1, got '0'"),
        ({"MAIL_URL": "http://mail.example"}, "MAIL_URL must be console, or smtp:// or smtps:// with a host"),
        ({"MAIL_URL": "smtp://u:secret@mail.example:x"}, "MAIL_URL has a port that is not a number"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM must be one email address"),
        ({"RESET_URL": "https://app.example/reset"}, "RESET_URL must be an http(s) URL containing {token}"),
        ({"RESET_TOKEN_TTL": "0"}, "RESET_TOKEN_TTL must be an integer of at least 1, got '0'"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_variable(env: dict[str, str], message: str):
    with pytest.raises(ConfigError) as refused:
        load_settings(env=env)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_a_mail_urls_password_is_never_echoed():
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"MAIL_URL": "smtp://u:hunter2-secret@mail.example:x"})
    assert "hunter2-secret" not in str(refused.value)


def test_webhook_settings_are_read_as_endpoints_and_delays():
    secret = "whsec_" + "A" * 32
    settings = load_settings(
        env={"WEBHOOK_URLS": " https://a.example/hook ,http://b.example ", "WEBHOOK_SECRET": secret}
    )
    assert settings.webhook_endpoints == ("https://a.example/hook", "http://b.example")
    assert load_settings(env={"WEBHOOK_RETRY_SCHEDULE": "500ms,1.5s,2m,1h"}).retry_delays == (0.5, 1.5, 120, 3600)
    assert load_settings(env={}).webhook_endpoints == ()
    assert secret not in repr(settings)


def test_every_bad_value_is_named_on_the_same_line():
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"PORT": "x", "RATE_LIMIT": "x"})
    assert str(refused.value) == (
        "PORT must be an integer from 0 to 65535, got 'x'; RATE_LIMIT must be on or off, got 'x'"
    )


def test_overrides_are_validated_too():
    with pytest.raises(ConfigError, match=r"^BCRYPT_ROUNDS must be an integer from 4 to 31, got 40$"):
        load_settings(env={}, bcrypt_rounds=40)
    with pytest.raises(ConfigError, match=r"^PORT "):
        load_settings(env={}).with_overrides(port=-1)
    with pytest.raises(TypeError, match="bcrypt_round"):
        load_settings(env={}, bcrypt_round=4)


def test_with_overrides_returns_a_new_frozen_copy():
    settings = load_settings(env={"SECRET_KEY": "s" * 32, "DB_HOST": "h"})
    changed = settings.with_overrides(database_url="sqlite:///other.db", rate_limit_ip="5/minute")
    assert changed.database_url == "sqlite+aiosqlite:///other.db"
    assert (changed.rate_limit_ip, changed.secret_key) == ("5/minute", "s" * 32)
    assert settings.database_url == "postgresql+asyncpg://h:5432/referral"
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_precedence_defaults_dotenv_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "SERVICE_NAME = from-dotenv\nPORT=9000\nEXP_TOKEN_DAY=3\nWORKERS=2\nSECRET_KEY=\n"
        "DB_NAME=12345\nRATE_LIMIT=off\nUNRELATED_TOOL=whatever\n"
    )
    for name in ("SERVICE_NAME", "EXP_TOKEN_DAY", "SECRET_KEY", "DB_NAME", "DATABASE_URL", "DB_HOST", "RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("HOST", "")

    settings = load_settings(env_file=dotenv, workers=4)

    assert settings.service_name == "from-dotenv"
    assert settings.exp_token_day == 3
    assert settings.token_lifetime_seconds == 3 * 86_400
    assert settings.rate_limit is False
    assert settings.port == 9100
    assert settings.workers == 4
    assert settings.host == "127.0.0.1"  # empty counts as unset
    assert settings.secret_key_is_random
    assert settings.database_url == "sqlite+aiosqlite:///12345"


def test_missing_dotenv_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SERVICE_NAME", "from-environment")
    assert load_settings(env_file=tmp_path / "absent.env").service_name == "from-environment"


# -- .env.example and docs/configuration.md list every setting with its declared default --

CONFIGURATION = ROOT / "docs" / "configuration.md"
PAGE = "docs/configuration.md"


def shown(default: Any) -> str:
    """How a declared default is written in `.env.example`; empty when unset."""
    if isinstance(default, bool):
        return "on" if default else "off"
    return "" if default is None else str(default)


def env_example_problems(settings: type[Settings], text: str) -> list[str]:
    problems: list[str] = []
    listed: dict[str, str] = {}
    for line in text.splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            name, value = match[1], match[2].strip()
            if name in listed:
                problems.append(f".env.example lists {name} twice")
            listed[name] = value
    declared = {variable_name(name): field for name, field in settings.model_fields.items()}
    for name, field in declared.items():
        if name not in listed:
            problems.append(f".env.example misses {name}: add\n# {field.description}\n{name}={shown(field.default)}")
        elif listed[name] != shown(field.default):
            problems.append(f".env.example shows {name}={listed[name]}, declared default {shown(field.default)!r}")
    problems.extend(f".env.example lists {name}, which is not a setting" for name in listed.keys() - declared.keys())
    return problems


def settings_table(text: str, heading: str = "Settings") -> list[list[str]]:
    """The cells of the rows of the first table in the page's `## <heading>` section."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert rows[0] == ["variable", "meaning", "default"], rows[0]
    return rows[2:]


def table_problems(settings: type[Settings], rows: list[list[str]], page: str = PAGE, every: bool = True) -> list[str]:
    """What is wrong with a table of settings: a default that is not the declared one, a row that is not a
    setting, and (`every`) a setting it misses."""
    problems: list[str] = []
    listed: dict[str, str] = {}
    for row in rows:
        names = row[0].split(", ")
        if len(row) != 3 or not all(re.fullmatch(r"`[A-Z][A-Z0-9_]*`", name) for name in names):
            problems.append(f"{page}: cannot read the configuration row {row}")
            continue
        defaults = [row[2]] if len(names) == 1 else row[2].split(", ")
        if len(defaults) != len(names):
            problems.append(f"{page}: row {row[0]} has {len(names)} variables but {len(defaults)} defaults")
            continue
        for name, default in zip(names, defaults, strict=True):
            if name.strip("`") in listed:
                problems.append(f"{page} lists {name} twice")
            listed[name.strip("`")] = default
    declared = {variable_name(name): field for name, field in settings.model_fields.items()}
    for name, field in declared.items():
        expected = shown(field.default)
        written = f"`{expected}`" if expected else "unset"
        if name not in listed:
            if every:
                problems.append(f"{page}'s settings table misses | `{name}` | {field.description} | {written} |")
        elif expected and not listed[name].startswith(written):
            problems.append(f"{page} shows {name} defaulting to {listed[name]!r}, declared {written}")
        elif not expected and not (listed[name] == "—" or listed[name].startswith("unset")):
            problems.append(f"{page} shows {name} defaulting to {listed[name]!r}, declared unset ('unset…' or '—')")
    problems.extend(f"{page} lists {name}, which is not a setting" for name in listed.keys() - declared.keys())
    return problems


def test_env_example_and_the_configuration_page_list_every_setting_with_its_default():
    env_example = (ROOT / ".env.example").read_text()
    assert env_example_problems(Settings, env_example) == []
    assert table_problems(Settings, settings_table(CONFIGURATION.read_text())) == []


def test_the_readmes_essential_settings_show_their_declared_defaults():
    rows = settings_table((ROOT / "README.md").read_text(), "Configuration")
    assert rows, "the README's Configuration section shows the essential settings in a table"
    assert table_problems(Settings, rows, "README.md", every=False) == []


def test_every_setting_has_a_one_line_description():
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert "\n" not in field.description, name


def test_a_new_or_changed_setting_fails_until_documented():
    class Extended(Settings):
        tracing: bool = Field(True, description="OpenTelemetry traces")
        port: int = Field(8080, ge=0, le=65535, description="bind port")

    env_example = (ROOT / ".env.example").read_text()
    page = CONFIGURATION.read_text()
    assert env_example_problems(Extended, env_example) == [
        ".env.example shows PORT=8000, declared default '8080'",
        ".env.example misses TRACING: add\n# OpenTelemetry traces\nTRACING=on",
    ]
    assert table_problems(Extended, settings_table(page)) == [
        "docs/configuration.md shows PORT defaulting to '`8000`', declared `8080`",
        "docs/configuration.md's settings table misses | `TRACING` | OpenTelemetry traces | `on` |",
    ]
    assert table_problems(Extended, settings_table(page), every=False) == [
        "docs/configuration.md shows PORT defaulting to '`8000`', declared `8080`",
    ]
    changed = page.replace("| `WORKERS` |", "| `WORKERS`, `THREADS` |")
    assert table_problems(Settings, settings_table(changed)) != []
    assert env_example_problems(Settings, env_example + "\nTHREADS=2\n") == [
        ".env.example lists THREADS, which is not a setting"
    ]
