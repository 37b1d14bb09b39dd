"""Service settings, declared once in `Settings`: environment variable, type, default, bounds, meaning.

Precedence, lowest first: the declared defaults < `.env` < real environment variables < values passed
to `load_settings(**overrides)`. Empty values count as unset. Sanic's own knobs (body limit, timeouts)
live in `sanic.cfg`, loaded by the app factory.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from annotated_types import Ge, Gt, Le
from limits import parse as parse_rate_limit
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url as parse_redis_url

log = logging.getLogger("referral.config")

GENERATED_KEY_VARIABLE = "REFERRAL_GENERATED_SECRET_KEY"
SECRET_KEY_MIN_BYTES = 32
DEFAULT_SQLITE_FILE = "referral.db"
DEFAULT_POSTGRES_DATABASE = "referral"
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
WEBHOOK_SECRET_MIN_BYTES = 24
INTEGRATION_KEY_MIN_LENGTH = 32  # characters of each INTEGRATION_KEYS key
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DRIVERS = {"postgres": "postgresql+asyncpg", "postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Every setting once; each field is read from the environment variable of its upper-cased name."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        env_file=".env",
        env_ignore_empty=True,
        validate_default=True,
    )

    service_name: str = Field("referral", description="service name: logs, OpenAPI title, JWT `iss`")
    host: str = Field("127.0.0.1", description="bind address of `python -m referral`")
    port: int = Field(8000, ge=0, le=65535, description="bind port of `python -m referral`")
    workers: int = Field(1, ge=1, description="worker processes of `python -m referral`")
    secret_key: str = Field(
        "",
        repr=False,
        description="HMAC key of the JWTs (32+ random bytes); changing it logs every user out; "
        "unset: random per start, with a warning",
    )
    exp_token_day: int = Field(1, ge=1, description="token lifetime in days")
    db_host: str = Field("", description="PostgreSQL server; unset: SQLite")
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    db_user: str = Field("", description="PostgreSQL user")
    db_passw: str = Field("", repr=False, description="PostgreSQL password")
    db_name: str = Field(
        "",
        description=f"PostgreSQL database (unset: {DEFAULT_POSTGRES_DATABASE}), "
        f"or the SQLite file without DB_HOST (unset: {DEFAULT_SQLITE_FILE})",
    )
    db_schema: str | None = Field(
        None,
        description="PostgreSQL schema holding every table and Alembic's version table, created if missing; "
        "unset: public",
    )
    database_url: str = Field(
        "",
        repr=False,
        description="overrides DB_HOST, DB_PORT, DB_USER, DB_PASSW and DB_NAME (DB_SCHEMA still applies): "
        "postgresql://… or sqlite:///…; unset: built from DB_*",
    )
    db_pool_size: int = Field(10, ge=1, description="connections per worker (PostgreSQL pool maximum; SQLite)")
    bcrypt_rounds: int = Field(12, ge=4, le=31, description="bcrypt cost; each +1 doubles the time of a login")
    code_cache_ttl: int = Field(60, ge=0, description="seconds a code looked up by email may stay cached (0: no cache)")
    code_cache_size: int = Field(10_000, ge=1, description="codes kept in each worker's cache")
    rate_limit: bool = Field(True, description="on/off: every rate limit")
    rate_limit_login: str = Field(
        "10/15minutes", description="failed logins per email before it is locked out (`limits` notation)"
    )
    rate_limit_ip: str = Field(
        "120/minute",
        description="requests per client IP to register, auth, token, getcode, referals/register, password/forgot "
        "and password/reset (`limits` notation)",
    )
    rate_limit_user: str = Field(
        "30/minute",
        description="authenticated writes per user: update_code, delete, logout, password (`limits` notation)",
    )
    hash_concurrency_per_ip: int = Field(
        2, ge=1, description="password hashes one client IP may have queued or running at once (per worker)"
    )
    hash_concurrency_per_network: int = Field(
        8,
        ge=1,
        description="password hashes one network (/24 of IPv4, /64 of IPv6) may have queued or running at once "
        "(per worker; with REDIS_URL, across every worker and instance)",
    )
    hash_queue_max: int = Field(
        64, ge=1, description="password hashes queued in a worker, all clients together; past it 503 at once"
    )
    redis_url: str | None = Field(
        None,
        repr=False,  # may hold a password
        description="shared code cache and rate-limit counters across workers and instances (keys begin with "
        "SERVICE_NAME); unset: in process",
    )
    redis_timeout_ms: int = Field(
        500,
        ge=1,
        description="milliseconds a Redis call (connect or answer) may take before Redis counts as down: rate limits "
        "then count in process and getcode reads the database, and Redis is tried again every second",
    )
    log_format: str = Field(
        "text", description="`text` or `json` (one object per line, for log shippers): every line of the service"
    )
    access_log: bool = Field(True, description="on/off: one line per request (method, path, status, time, ids)")
    metrics: bool = Field(True, description="on/off: `GET /metrics` in Prometheus text format (internal network only)")
    metrics_token: str | None = Field(
        None, repr=False, description="bearer token `/metrics` requires, when set (`Authorization: Bearer <token>`)"
    )
    webhook_urls: str = Field(
        "", description="comma-separated http(s) endpoints that receive every event; unset: no events recorded"
    )
    webhook_secret: str | None = Field(
        None,
        repr=False,
        description="`whsec_` + base64 of at least 24 random bytes: signs every delivery; required with WEBHOOK_URLS",
    )
    webhook_timeout: float = Field(10.0, gt=0, description="seconds one delivery attempt may take")
    webhook_retry_schedule: str = Field(
        "5s,5m,30m,2h,5h,10h,10h",
        description="delays before each retry, comma-separated, with units (ms, s, m, h); then the delivery fails",
    )
    webhook_concurrency: int = Field(8, ge=1, description="delivery attempts in flight per worker")
    webhook_allow_private: bool = Field(
        False, description="on/off: let endpoints resolve to loopback or private addresses (tests, internal networks)"
    )
    event_retention_days: int = Field(7, ge=1, description="delivered and failed events are deleted after these days")
    mail_url: str = Field(
        "console",
        repr=False,  # may hold a password
        description="`smtp://user:pass@host:port` (STARTTLS when the server offers it), `smtps://…` (TLS), or "
        "`console`: each message printed whole to stderr, outside the logs, with a warning at start",
    )
    mail_from: str = Field("referral@localhost", description="sender address of the service's emails")
    reset_url: str = Field(
        "http://127.0.0.1:8000/reset?token={token}",
        description="link in the password-reset email; `{token}` is replaced by the one-time token",
    )
    reset_token_ttl: int = Field(1800, ge=1, description="seconds a password-reset token stays valid")
    integration_keys: str = Field(
        "",
        repr=False,
        description=f"comma-separated keys (each at least {INTEGRATION_KEY_MIN_LENGTH} characters) for the "
        "`/integration/*` endpoints (`X-API-Key`); unset: those endpoints answer 401",
    )

    @property
    def webhook_endpoints(self) -> tuple[str, ...]:
        return tuple(url.strip() for url in self.webhook_urls.split(",") if url.strip())

    @property
    def integration_key_list(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.integration_keys.split(",") if key.strip())

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """WEBHOOK_RETRY_SCHEDULE in seconds."""
        return tuple(duration_seconds(delay) for delay in self.webhook_retry_schedule.split(","))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def token_lifetime_seconds(self) -> int:
        return self.exp_token_day * 86_400

    @property
    def secret_key_is_random(self) -> bool:
        """True when SECRET_KEY was unset and the key is the one generated for this start."""
        return self.secret_key == os.environ.get(GENERATED_KEY_VARIABLE)

    def with_overrides(self, **changes: Any) -> Settings:
        """A validated copy with `changes`; `database_url` is not rebuilt from changed DB_* parts."""
        return _without_environment({**self.model_dump(), **changes})

    @field_validator("secret_key")
    @classmethod
    def _random_when_unset(cls, key: str) -> str:
        if key and len(key.encode()) < SECRET_KEY_MIN_BYTES:
            raise ValueError(
                f"must be at least {SECRET_KEY_MIN_BYTES} bytes: a short key can be guessed and tokens forged "
                "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return key or shared_random_secret()

    @field_validator("db_schema")
    @classmethod
    def _plain_identifier(cls, schema: str | None) -> str | None:
        if schema and not SCHEMA_NAME.fullmatch(schema):
            raise ValueError("must be a plain identifier (letters, digits, _; at most 63)")
        return schema or None

    @field_validator("redis_url", "metrics_token", "webhook_secret")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url:
            try:
                parse_redis_url(url)
            except ValueError as error:  # redis-py's messages name the scheme or the port, never the password
                raise ValueError(f"is not a Redis URL: {error}") from None
        return url

    @field_validator("log_format")
    @classmethod
    def _text_or_json(cls, value: str) -> str:
        if value.lower() not in ("text", "json"):
            raise ValueError("must be text or json")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _resolve_database_url(cls, url: str, info: ValidationInfo) -> str:
        """DATABASE_URL, else one built from the DB_* fields (declared above it, so validated first)."""
        if url:
            return normalise_database_url(url)
        parts = ("db_host", "db_port", "db_user", "db_passw", "db_name")
        if not all(part in info.data for part in parts):
            return url  # the invalid part is reported on its own
        return database_url_from(*(info.data[part] for part in parts))

    @field_validator("webhook_urls")
    @classmethod
    def _http_urls(cls, urls: str) -> str:
        for url in (part.strip() for part in urls.split(",") if part.strip()):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"must be http(s) URLs with a host, and {url!r} is not")
        return urls

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, secret: str | None, info: ValidationInfo) -> str | None:
        if secret is None:
            if info.data.get("webhook_urls", "").strip():
                raise ValueError("is required with WEBHOOK_URLS (`whsec_` + base64 of at least 24 random bytes)")
            return None
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not secret.startswith("whsec_") or len(key) < WEBHOOK_SECRET_MIN_BYTES:
            raise ValueError(f"must be `whsec_` + base64 of at least {WEBHOOK_SECRET_MIN_BYTES} random bytes")
        return secret

    @field_validator("integration_keys")
    @classmethod
    def _long_keys(cls, keys: str) -> str:
        if any(len(key.strip()) < INTEGRATION_KEY_MIN_LENGTH for key in keys.split(",") if key.strip()):
            raise ValueError(
                f"each key must be at least {INTEGRATION_KEY_MIN_LENGTH} characters "
                "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return keys

    @field_validator("mail_url")
    @classmethod
    def _mail_url(cls, url: str) -> str:
        if url == "console":
            return url
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must be console, or smtp:// or smtps:// with a host")
        return url

    @field_validator("mail_from")
    @classmethod
    def _an_address(cls, address: str) -> str:
        if address.count("@") != 1 or not all(address.split("@")) or any(c in address for c in " \r\n<>,"):
            raise ValueError("must be one email address (name@domain)")
        return address

    @field_validator("reset_url")
    @classmethod
    def _a_link_with_the_token(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "{token}" not in url:
            raise ValueError("must be an http(s) URL containing {token}")
        return url

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _durations(cls, schedule: str) -> str:
        for delay in schedule.split(","):
            duration_seconds(delay)
        return schedule

    @field_validator("rate_limit_login", "rate_limit_ip", "rate_limit_user")
    @classmethod
    def _limits_notation(cls, limit: str) -> str:
        try:
            parse_rate_limit(limit)
        except ValueError:
            raise ValueError("is not a rate limit in the limits notation (e.g. 120/minute)") from None
        return limit


def duration_seconds(text: str) -> float:
    """`500ms`, `5s`, `30m`, `2h` in seconds; ValueError naming the text otherwise."""
    if match := DURATION.fullmatch(text.strip()):
        return float(match[1]) * DURATION_UNITS[match[2]]
    raise ValueError(f"must be delays with units (ms, s, m, h), comma-separated, and {text.strip()!r} is not")


def variable_name(field_name: str) -> str:
    """The environment variable of a `Settings` field."""
    return field_name.upper()


def database_url_from(host: str, port: int, user: str, password: str, name: str) -> str:
    """PostgreSQL when `host` is set, otherwise a SQLite file at `name`."""
    if not host:
        return f"sqlite+aiosqlite:///{name or DEFAULT_SQLITE_FILE}"
    user, password = quote(user, safe=""), quote(password, safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgresql+asyncpg://{credentials}{host}:{port}/{name or DEFAULT_POSTGRES_DATABASE}"


def normalise_database_url(url: str) -> str:
    """Pin the async drivers: `postgres://` and `postgresql://` use asyncpg, `sqlite://` aiosqlite."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("is not a URL")
    scheme = DRIVERS.get(scheme, scheme)
    if scheme not in DRIVERS.values():
        raise ValueError("has an unsupported scheme: use postgresql or sqlite")
    return f"{scheme}://{rest}"


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    env_file: str | Path | None = ".env",
    **overrides: Any,
) -> Settings:
    """Settings from `.env` and the environment, then `overrides` (field names).

    `env`, when given, stands for both the environment and `.env`: `env={}` means defaults only.
    """
    if env is None:
        _check_names(overrides)
        try:
            return Settings(_env_file=env_file, **overrides)
        except ValidationError as error:
            raise config_error(error) from None
    given = {name: value for name in Settings.model_fields if (value := env.get(variable_name(name)))}
    return _without_environment({**given, **overrides})


def _without_environment(values: Mapping[str, Any]) -> Settings:
    _check_names(values)
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    try:
        return Settings(_env_file=None, **{**defaults, **values})  # every field given: nothing read
    except ValidationError as error:
        raise config_error(error) from None


def _check_names(values: Mapping[str, Any]) -> None:
    if unknown := values.keys() - Settings.model_fields.keys():
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")


def config_error(error: ValidationError) -> ConfigError:
    """One line naming each variable and what is wrong with it."""
    return ConfigError("; ".join(_problem(details) for details in error.errors()))


def _problem(details: ErrorDetails) -> str:
    name = str(details["loc"][0]) if details["loc"] else ""
    field = Settings.model_fields.get(name)
    if details["type"] == "value_error":
        what = str(details.get("ctx", {}).get("error", details["msg"]))
    elif field is not None:
        what = _expectation(field)
    else:
        what = details["msg"]
    if field is not None and not field.repr:  # a secret is never echoed
        return f"{variable_name(name)} {what}"
    return f"{variable_name(name)} {what}, got {details['input']!r}"


def _expectation(field: FieldInfo) -> str:
    if field.annotation is bool:
        return "must be on or off"
    if field.annotation is int:
        low = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
        high = next((m.le for m in field.metadata if isinstance(m, Le)), None)
        if low is not None and high is not None:
            return f"must be an integer from {low} to {high}"
        return f"must be an integer of at least {low}" if low is not None else "must be an integer"
    if field.annotation is float:
        low = next((m.gt for m in field.metadata if isinstance(m, Gt)), None)
        return "must be a number" if low is None else f"must be a number above {low:g}"
    return "must be text"


def shared_random_secret() -> str:
    """A random SECRET_KEY for this start, exported so that every worker process signs alike."""
    secret = os.environ.get(GENERATED_KEY_VARIABLE)
    if not secret:
        secret = secrets.token_urlsafe(48)
        os.environ[GENERATED_KEY_VARIABLE] = secret
    return secret


def warn_if_insecure(settings: Settings) -> None:
    if settings.mail_url == "console":
        log.warning(
            "MAIL_URL is console: no email is sent; each message (reset links included) is printed to stderr. "
            "Set MAIL_URL to an SMTP server in production."
        )
    if settings.secret_key_is_random:
        log.warning(
            "SECRET_KEY is not set: using a random key for this run. Every token dies on restart "
            "and other instances cannot verify them. Set SECRET_KEY in production."
        )
