"""Service settings, read from the environment and an optional `.env` file.

Precedence, lowest first: built-in defaults < `.env` < real environment variables < values passed
to `load_settings(overrides=...)` (tests). Sanic's own knobs (body limit, timeouts) live in
`sanic.cfg`, loaded by the app factory.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dotenv import dotenv_values

log = logging.getLogger("referral.config")

DEFAULT_SQLITE_FILE = "referral.db"
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    service_name: str = "referral"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    secret_key: str = ""
    secret_key_is_random: bool = False
    exp_token_day: int = 1
    database_url: str = f"sqlite+aiosqlite:///{DEFAULT_SQLITE_FILE}"
    db_schema: str | None = None
    db_pool_size: int = 10
    sqlite_pool: bool = True  # SQLITE_POOL=off: the stock `databases` SQLite backend (benchmark comparison)
    bcrypt_rounds: int = 12
    code_cache_ttl: int = 60
    code_cache_size: int = 10_000
    rate_limit: bool = True
    rate_limit_login: str = "10/15minutes"
    rate_limit_ip: str = "120/minute"
    redis_url: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def token_lifetime_seconds(self) -> int:
        return self.exp_token_day * 86_400

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"on", "true", "1", "yes"}:
        return True
    if raw in {"off", "false", "0", "no"}:
        return False
    raise ConfigError(f"{name} must be 'on' or 'off', got {raw!r}")


def database_url_from(env: Mapping[str, str]) -> str:
    """DATABASE_URL if given, PostgreSQL when DB_HOST is set, otherwise a SQLite file at DB_NAME."""
    if url := env.get("DATABASE_URL", "").strip():
        return normalise_database_url(url)
    name = env.get("DB_NAME", "").strip()
    host = env.get("DB_HOST", "").strip()
    if not host:
        return f"sqlite+aiosqlite:///{name or DEFAULT_SQLITE_FILE}"
    user = quote(env.get("DB_USER", "").strip(), safe="")
    password = quote(env.get("DB_PASSW", ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = env.get("DB_PORT", "").strip() or "5432"
    return f"postgresql+asyncpg://{credentials}{host}:{port}/{name or 'referral'}"


def normalise_database_url(url: str) -> str:
    """Pin the async drivers: `postgres://` and `postgresql://` use asyncpg, `sqlite://` aiosqlite."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"DATABASE_URL is not a URL: {url!r}")
    scheme = {
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
    }.get(scheme, scheme)
    if scheme not in {"postgresql+asyncpg", "sqlite+aiosqlite"}:
        raise ConfigError(f"unsupported database scheme {scheme!r}: use postgresql or sqlite")
    return f"{scheme}://{rest}"


def read_environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """The `.env` file's values overlaid by the real environment (real variables win)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    env_file: str | Path | None = ".env",
    **overrides: Any,
) -> Settings:
    """Build Settings from `env` (default: `.env` + os.environ), then apply `overrides`."""
    if env is None:
        env = read_environment(env_file)
    secret_key = env.get("SECRET_KEY", "")
    settings = Settings(
        service_name=env.get("SERVICE_NAME", "").strip() or "referral",
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=_int(env, "PORT", 8000, minimum=0),
        workers=_int(env, "WORKERS", 1, minimum=1),
        secret_key=secret_key,
        exp_token_day=_int(env, "EXP_TOKEN_DAY", 1, minimum=1),
        database_url=database_url_from(env),
        db_schema=env.get("DB_SCHEMA", "").strip() or None,
        db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
        sqlite_pool=_switch(env, "SQLITE_POOL", True),
        bcrypt_rounds=_int(env, "BCRYPT_ROUNDS", 12, minimum=4),
        code_cache_ttl=_int(env, "CODE_CACHE_TTL", 60, minimum=0),
        code_cache_size=_int(env, "CODE_CACHE_SIZE", 10_000, minimum=1),
        rate_limit=_switch(env, "RATE_LIMIT", True),
        rate_limit_login=env.get("RATE_LIMIT_LOGIN", "").strip() or "10/15minutes",
        rate_limit_ip=env.get("RATE_LIMIT_IP", "").strip() or "120/minute",
        redis_url=env.get("REDIS_URL", "").strip() or None,
    )
    settings = replace(settings, **overrides)
    if settings.db_schema and not SCHEMA_NAME.fullmatch(settings.db_schema):
        raise ConfigError(f"DB_SCHEMA must be a plain identifier, got {settings.db_schema!r}")
    if settings.bcrypt_rounds > 31:
        raise ConfigError("BCRYPT_ROUNDS must be between 4 and 31")
    if not settings.secret_key:
        settings = replace(settings, secret_key=shared_random_secret(), secret_key_is_random=True)
    return settings


def shared_random_secret() -> str:
    """A random SECRET_KEY for this start, exported so that every worker process signs alike."""
    secret = os.environ.get("REFERRAL_GENERATED_SECRET_KEY")
    if not secret:
        secret = secrets.token_urlsafe(48)
        os.environ["REFERRAL_GENERATED_SECRET_KEY"] = secret
    return secret


def warn_if_insecure(settings: Settings) -> None:
    if settings.secret_key_is_random:
        log.warning(
            "SECRET_KEY is not set: using a random key for this run. Every token dies on restart "
            "and other instances cannot verify them. Set SECRET_KEY in production."
        )
    elif len(settings.secret_key.encode()) < 32:
        log.warning("SECRET_KEY is shorter than 32 bytes: use a longer random key in production.")
