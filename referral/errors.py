"""What can go wrong, in the service's own words: raised by services and the data layer, free of HTTP.

Each error carries the message a client may read. The HTTP layer maps each class to a status, a
problem type and headers in one table (`referral.api.problems.PROBLEMS`).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every expected failure; `message` is the default, readable explanation."""

    message = "The request cannot be carried out."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class InvalidField(ServiceError):
    """A value breaks a rule that only the service can check (e.g. self-referral)."""

    field = "body"

    def __init__(self, message: str | None = None, *, field: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.errors = {field or self.field: reason or str(self)}


class RateLimited(ServiceError):
    message = "Too many requests: slow down."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Overloaded(ServiceError):
    message = "Too many password checks are waiting in this server; try again in a moment."


class DatabaseUnavailable(ServiceError):
    message = "The database is unavailable; try again shortly."


class MigrationsPending(DatabaseUnavailable):
    """The database is not at the code's migration (behind or ahead): nothing is served until it is."""

    message = "The database is not at this release's migration: migrations are pending; try again later."


class DataConflict(ServiceError):
    message = "The request conflicts with existing data."
