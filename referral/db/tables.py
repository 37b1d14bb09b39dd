"""The schema: SQLAlchemy Core tables shared by the queries and the Alembic migrations.

Ids are never handed out twice: tables with an integer id say `sqlite_autoincrement=True` (SQLite would
otherwise give a deleted row's id to the next row, and a deleted account's tokens would open the next
account); PostgreSQL's sequences never reuse a value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

REVISION = "0008"
"""The Alembic revision these tables are (tests/test_migrations.py checks it is alembic/versions' head):
each worker compares the database's with it without loading Alembic."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores UTC, returns aware datetimes on every backend (SQLite hands back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


user = sa.Table(
    "user",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # Both null once the account is deleted: the row stays as a tombstone (`deleted_at`) so that codes,
    # referrals and ids keep their references.
    sa.Column("email", sa.String(320), nullable=True, unique=True),
    sa.Column("password_hash", sa.String(100), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Raised by logout and password change: tokens carry the version they were issued at.
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sqlite_autoincrement=True,
)

referral_code = sa.Table(
    "referral_code",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Set when the code is deleted, replaced, or found expired while a new one is issued.
    sa.Column("retired_at", UTCDateTime, nullable=True),
    # Referrals it may register (null: no limit), and those it did: the registering transaction adds one
    # only while `uses < max_uses` (referral.db.codes.use_code), so the database holds the limit.
    sa.Column("max_uses", sa.Integer, nullable=True),
    sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_referral_code_user_id_id", "user_id", "id"),  # a user's codes, newest first (`/refer/stats`)
    sa.Index(
        "uq_referral_code_user_id_live",
        "user_id",
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

referral = sa.Table(
    "referral",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # Null once that person deleted their account.
    sa.Column("email", sa.String(320), nullable=True, unique=True),
    # The canonical mailbox (referral.services.mailboxes): one referral per inbox. Null for rows registered
    # before the rule whose mailbox an older row already had, and once that person deleted their account.
    sa.Column("mailbox", sa.String(320), nullable=True, unique=True),
    # After a deletion: an HMAC of the mailbox (key derived from SECRET_KEY), so that it cannot be referred
    # again while the address itself is erased.
    sa.Column("erased_mailbox", sa.String(64), nullable=True, unique=True),
    sa.Column("code_id", sa.Integer, sa.ForeignKey("referral_code.id", ondelete="CASCADE"), nullable=False),
    sa.Column("referrer_id", sa.Integer, sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False),
    # The account created with the referral when a password was given.
    sa.Column("user_id", sa.Integer, sa.ForeignKey("user.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # "registered", then "qualified" once the integrator reports a conversion (with its time and reference).
    sa.Column("status", sa.String(16), nullable=False, server_default="registered"),
    sa.Column("qualified_at", UTCDateTime, nullable=True),
    sa.Column("reference", sa.String(128), nullable=True),
    sa.Index("ix_referral_referrer_id_id", "referrer_id", "id"),
    sa.Index("ix_referral_status_id", "status", "id"),
    sa.Index("ix_referral_code_id", "code_id"),
    sqlite_autoincrement=True,
)


# How many referrals each referrer has, and how many of them qualified, kept in the transactions that
# register and qualify one, so that `/referals/list` (X-Total-Count) and `/refer/stats` read one row
# instead of counting a growing list.
referral_count = sa.Table(
    "referral_count",
    metadata,
    sa.Column("referrer_id", sa.Integer, sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("qualified", sa.Integer, nullable=False, server_default="0"),
)


# The outbox (referral.outbox): each event is written in the transaction of the change it reports, with
# one delivery per destination; workers claim due deliveries, attempt them and record the outcome.
EVENT_ID_LENGTH = 40  # "msg_" and a UUID's 36 characters

outbox_event = sa.Table(
    "outbox_event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # What receivers see (`webhook-id`) and drop duplicates by: random, never a row id a sweep could reuse.
    sa.Column("event_id", sa.String(EVENT_ID_LENGTH), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON body: {"type", "timestamp", "data"}
    sa.Column("created_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

DELIVERY_STATES = ("pending", "delivered", "failed")

outbox_delivery = sa.Table(
    "outbox_delivery",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("outbox_event.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),  # "webhook" (email joins with the account lifecycle)
    sa.Column("destination", sa.String(2048), nullable=False),  # the endpoint's URL
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime, nullable=True),  # a worker's claim on an attempt in flight
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),  # delivered or failed: the retention sweep's clock
    sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state"),
    sa.Index("ix_outbox_delivery_state_next_attempt_at", "state", "next_attempt_at"),
    sa.Index("ix_outbox_delivery_event_id", "event_id"),
    sqlite_autoincrement=True,
)


# Password resets (referral.services.resets), one row per canonical mailbox asked about, keyed by an HMAC of
# the mailbox (no address is kept) and written alike whether the email has an account or not: the requests
# of its current hour (the limit on messages), and the live token of the account last asked for, kept as its
# SHA-256 only (null `user_id` for an email without an account). A newer request replaces the token, a
# reset clears it; rows whose hour ended and whose token is dead are deleted by the next request.
password_reset = sa.Table(
    "password_reset",
    metadata,
    sa.Column("mailbox_key", sa.String(64), primary_key=True),
    sa.Column("window_started_at", UTCDateTime, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),  # hex SHA-256 of the emailed token
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Index("ix_password_reset_window_started_at", "window_started_at"),
    sa.Index("ix_password_reset_user_id", "user_id"),
)
