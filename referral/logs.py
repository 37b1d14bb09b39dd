"""Logs: every line of the service and of Sanic as text or JSON; security events; the access line's format.

Every logger of the service (`referral.*`) and of Sanic goes through one handler on stderr, formatted
as LOG_FORMAT says: `text` for people, `json` for log shippers (one object per line, a traceback in
an `exception` field). Sanic's own access log is off: it would log URLs with their query string, and
getcode's query holds an email. The access line itself (`referral.access`) and request ids are the
HTTP layer's: `referral.api.access`.

Security events (`referral.security`) go through `security_event(...)`; an email appears in them
only as `email_hash(...)`, an HMAC-SHA256 keyed with SECRET_KEY, truncated. No password, token,
password hash or full email is ever logged: the code logs none, and as a second line of defence every
line but the access line (whose fields are known) is scrubbed of anything shaped like an email, a JWT,
a bcrypt hash or a URL's query string. This module imports no Sanic: services log through it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

ACCESS_LOGGER = "referral.access"
SECURITY_LOGGER = "referral.security"
EMAIL_HASH_LENGTH = 16  # hex digits: 64 bits, enough to tell accounts apart in a log
EMAIL_HASH_CONTEXT = b"referral log email:"  # the key's use here is not its use for tokens

security_log = logging.getLogger(SECURITY_LOGGER)

# Loggers whose records go to the service's handler; others' warnings reach it through the root logger.
SERVICE_LOGGERS = ("referral", "sanic.root", "sanic.error", "sanic.server", "sanic.websockets")


# ------------------------------------------------------------------------------------------- #
# The request being handled: its id, from the HTTP layer (referral.api.access)
# ------------------------------------------------------------------------------------------- #

_request_id_source: Callable[[], str | None] = lambda: None  # noqa: E731


def set_request_id_source(source: Callable[[], str | None]) -> None:
    """How to find the id of the request this task is handling (None outside a request)."""
    global _request_id_source
    _request_id_source = source


def current_request_id() -> str | None:
    return _request_id_source()


# ------------------------------------------------------------------------------------------- #
# Security events
# ------------------------------------------------------------------------------------------- #


def email_hash(email: str, secret_key: str) -> str:
    """A keyed hash of an email for the logs: the same email gives the same value under one SECRET_KEY,
    and without the key nobody can test a guess against it (a bare digest could be looked up)."""
    mac = hmac.new(secret_key.encode(), EMAIL_HASH_CONTEXT + email.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return mac.hexdigest()[:EMAIL_HASH_LENGTH]


def security_event(event: str, *, level: int = logging.WARNING, **fields: Any) -> None:
    """Log `event` on `referral.security` with its fields (never a secret or a bare email)."""
    if security_log.isEnabledFor(level):
        security_log.log(
            level, "%s", event, extra={"fields": {"event": event, **fields, "request_id": current_request_id()}}
        )


# ------------------------------------------------------------------------------------------- #
# Formats
# ------------------------------------------------------------------------------------------- #

# Second line of defence: what a message or a traceback should never carry (emails, JWTs, bcrypt
# hashes, query strings), replaced before it is written.
_SCRUB = (
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "<token>"),
    (re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"), "<password hash>"),
    (re.compile(r"(/[^\s?\"'<>]*)\?[^\s\"'<>]+"), r"\1?<query>"),
    (
        re.compile(r"[^\s@\"'<>(),;:\[\]/\\=&?]+@[^\s@\"'<>(),;:\[\]/\\=&?]+\.[^\s@\"'<>(),;:\[\]/\\=&?.]{2,}"),
        "<email>",
    ),
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Control characters written as JSON writes them (`\\u001b`, `\\n`): text from a request (its method,
    its path) cannot move the cursor or recolour the terminal of whoever reads the log, nor start a line."""
    return _CONTROL.sub(lambda found: json.dumps(found.group())[1:-1], text)


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: `2026-12-03T21:15:00.123Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class _ServiceFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.worker = (os.environ.get("SANIC_WORKER_IDENTIFIER") or "Main").strip()

    def traceback(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        text = record.exc_text or ""
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}" if text else self.formatStack(record.stack_info)
        return scrub(text) if text else None


def _logfmt(value: object) -> str:
    text = str(value)
    plain = text and text.isprintable() and not any(c in text for c in ' "=\\')
    return text if plain else json.dumps(text, ensure_ascii=False)


class TextFormatter(_ServiceFormatter):
    """`2026-12-03T21:15:00.123Z [Srv 0] INFO referral.access: GET /refer/getcode 200 0.41ms request_id=…`"""

    def access_line(
        self, created: float, method: str, path: str, status: int, seconds: float, rid: str, user_id: int | None
    ) -> str:
        line = (
            f"{timestamp(created)} [{self.worker}] INFO {ACCESS_LOGGER}: "
            f"{escape_controls(method)} {escape_controls(path)} {status} {seconds * 1000:.2f}ms request_id={rid}"
        )
        return line if user_id is None else f"{line} user_id={user_id}"

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return self.access_line(record.created, *access)
        head = f"{timestamp(record.created)} [{self.worker}] {record.levelname} {record.name}:"
        fields = getattr(record, "fields", None)
        if fields is not None:
            line = f"{head} " + " ".join(
                f"{name}={_logfmt(value)}" for name, value in fields.items() if value is not None
            )
        else:
            line = f"{head} {record.getMessage()}"
            if (rid := current_request_id()) is not None:
                line = f"{line} request_id={rid}"
        line = escape_controls(scrub(line))
        traceback = self.traceback(record)
        if traceback is None:
            return line
        return "\n".join([line, *map(escape_controls, traceback.split("\n"))])


class JsonFormatter(_ServiceFormatter):
    """One JSON object per line: time, level, logger, message, worker, pid, the record's fields,
    `request_id` within a request, `exception` for a traceback."""

    def access_line(
        self, created: float, method: str, path: str, status: int, seconds: float, rid: str, user_id: int | None
    ) -> str:
        document: dict[str, Any] = {
            "time": timestamp(created),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "message": f"{method} {path} {status}",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": rid,
        }
        if user_id is not None:
            document["user_id"] = user_id
        document["worker"] = self.worker
        document["pid"] = os.getpid()
        return _json(document)

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return self.access_line(record.created, *access)
        document: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            document.update((name, scrub(v) if isinstance(v, str) else v) for name, v in fields.items())
        elif (rid := current_request_id()) is not None:
            document["request_id"] = rid
        if (traceback := self.traceback(record)) is not None:
            document["exception"] = traceback
        document["worker"] = self.worker
        document["pid"] = record.process
        return _json(document)


def _json(document: dict[str, Any]) -> str:
    try:
        return orjson.dumps(document, default=str).decode()
    except TypeError:  # e.g. a lone surrogate from undecodable input
        return json.dumps(document, default=str)


# ------------------------------------------------------------------------------------------- #
# Set-up
# ------------------------------------------------------------------------------------------- #


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler of the service's lines, on the root logger; stderr as it is when written to.

    Each line is one write (stderr is line-buffered), so workers sharing stderr never mix their lines.
    """

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr  # looked up each time: a test's capture may have replaced it

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(log_format: str) -> None:
    """Route every line of the service and of Sanic through one handler in `log_format` (text or json).

    The handler sits on the root logger (replacing an earlier one of ours, not other handlers, so a
    test's log capture keeps working); the service's and Sanic's loggers log at INFO and propagate to
    it; other libraries' loggers reach it at WARNING and above. Sanic's access log is silenced.
    """
    logging.captureWarnings(True)  # Python's warnings too, as lines of the format (`py.warnings`)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ServiceHandler)]:
        root.removeHandler(handler)
    root.addHandler(ServiceHandler(JsonFormatter() if log_format == "json" else TextFormatter()))
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):  # Sanic's defaults, when another Sanic app set them up
            logger.removeHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = True
    sanic_access = logging.getLogger("sanic.access")
    for handler in list(sanic_access.handlers):
        sanic_access.removeHandler(handler)
    sanic_access.setLevel(logging.CRITICAL)  # its lines carry the query string: never written
    sanic_access.propagate = False
