"""Queries on password resets: one row per canonical mailbox, with the requests of its hour and its live token.

A request writes the same statements whether the email has an account or not (`record_request`, then
`record_message` or `record_no_message`), so the two take the same time and leave the same kind of rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from databases.interfaces import Record

from referral.db.database import ReferralDatabase, dialect_insert
from referral.db.tables import UTCDateTime, password_reset, user
from referral.outbox.mail import Mail
from referral.outbox.record import record_mail, record_no_mail

REQUEST_WINDOW = timedelta(hours=1)


async def account_to_reset(db: ReferralDatabase, email: str) -> int | None:
    """The id of the account with this email, None when there is none."""
    return await db.fetch_val(sa.select(user.c.id).where(user.c.email == email))


async def record_request(
    db: ReferralDatabase,
    mailbox_key: str,
    *,
    user_id: int | None,
    token_hash: str,
    expires_at: datetime,
    messages_per_window: int,
    now: datetime,
) -> int:
    """Count one request for the mailbox and, while its hour allows a message, store the token in place of
    the older one (for an email without an account, `user_id` None: the account's token is left as it is).
    Returns the requests of the mailbox's current hour, this one included. Rows whose hour ended and whose
    token is dead are deleted first (run it in the request's transaction)."""
    cutoff = now - REQUEST_WINDOW
    p = password_reset.c
    dead = sa.or_(p.expires_at.is_(None), p.expires_at <= now)
    await db.execute(password_reset.delete().where(p.window_started_at <= cutoff, dead))
    insert = dialect_insert(db)(password_reset).values(
        mailbox_key=mailbox_key,
        window_started_at=now,
        requests=1,
        user_id=user_id,
        token_hash=token_hash if user_id is not None else None,
        expires_at=expires_at if user_id is not None else None,
    )
    window_over = p.window_started_at <= cutoff  # the old row's values: SET reads them, not the new ones
    replaces = sa.and_(sa.or_(window_over, p.requests < messages_per_window), insert.excluded.user_id.is_not(None))

    def new_or_kept(column: sa.Column) -> sa.ColumnElement:
        return sa.case((replaces, insert.excluded[column.name]), else_=column)

    query = insert.on_conflict_do_update(
        index_elements=["mailbox_key"],
        set_={
            "window_started_at": sa.case((window_over, sa.literal(now, UTCDateTime)), else_=p.window_started_at),
            "requests": sa.case((window_over, 1), else_=p.requests + 1),
            "user_id": new_or_kept(p.user_id),
            "token_hash": new_or_kept(p.token_hash),
            "expires_at": new_or_kept(p.expires_at),
        },
    ).returning(p.requests)
    return await db.fetch_val(query)


async def record_message(db: ReferralDatabase, mail: Mail, *, now: datetime) -> None:
    """The reset message to an account, into the outbox (after `record_request`, in its transaction)."""
    await record_mail(db, mail, now=now)


async def record_no_message(db: ReferralDatabase, *, now: datetime) -> None:
    """For an email without an account: the same outbox writes as a message, finished at once, to nobody."""
    await record_no_mail(db, now=now)


async def token_owner(db: ReferralDatabase, token_hash: str, *, now: datetime) -> Record | None:
    """The account (`id`, `email`) a live token resets, None for an unknown, used or expired one."""
    p = password_reset.c
    query = (
        sa.select(user.c.id, user.c.email)
        .join(password_reset, p.user_id == user.c.id)
        .where(p.token_hash == token_hash, p.expires_at > now)
    )
    return await db.fetch_one(query)


async def use_token(db: ReferralDatabase, token_hash: str, *, now: datetime) -> int | None:
    """Clear a live token: the id of its account, None when it was unknown, used (even a moment ago by a
    concurrent reset) or expired."""
    p = password_reset.c
    query = (
        password_reset.update()
        .where(p.token_hash == token_hash, p.expires_at > now, p.user_id.is_not(None))
        .values(token_hash=None, expires_at=None)
        .returning(p.user_id)
    )
    return await db.fetch_val(query)


async def forget_token(db: ReferralDatabase, user_id: int) -> None:
    """Clear the account's reset token, if any (its account is being deleted)."""
    p = password_reset.c
    await db.execute(
        password_reset.update().where(p.user_id == user_id).values(user_id=None, token_hash=None, expires_at=None)
    )
