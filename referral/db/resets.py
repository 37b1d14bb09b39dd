"""Queries on password resets: the per-mailbox request count, and the one live token of each account."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from databases.interfaces import Record

from referral.db.database import ReferralDatabase, dialect_insert
from referral.db.tables import UTCDateTime, password_reset, reset_request, user
from referral.outbox.mail import Mail
from referral.outbox.record import record_mail

REQUEST_WINDOW = timedelta(hours=1)


async def count_request(db: ReferralDatabase, mailbox_key: str, *, now: datetime) -> int:
    """Count one reset request for the mailbox: how many it made in its current hour, this one included.
    Deletes the counts of hours that ended first (run it in the request's transaction)."""
    cutoff = now - REQUEST_WINDOW
    r = reset_request.c
    await db.execute(reset_request.delete().where(r.window_started_at <= cutoff))
    now_value = sa.literal(now, UTCDateTime)
    insert = dialect_insert(db)(reset_request).values(mailbox_key=mailbox_key, window_started_at=now, requests=1)
    window_over = r.window_started_at <= cutoff  # a concurrent request may have kept an ended hour's row
    query = insert.on_conflict_do_update(
        index_elements=["mailbox_key"],
        set_={
            "window_started_at": sa.case((window_over, now_value), else_=r.window_started_at),
            "requests": sa.case((window_over, 1), else_=r.requests + 1),
        },
    ).returning(r.requests)
    return await db.fetch_val(query)


async def account_to_reset(db: ReferralDatabase, email: str) -> int | None:
    """The id of the account with this email, None when there is none."""
    return await db.fetch_val(sa.select(user.c.id).where(user.c.email == email))


async def replace_token(
    db: ReferralDatabase, *, user_id: int, token_hash: str, expires_at: datetime, mail: Mail, now: datetime
) -> None:
    """Store the account's new token hash in place of any older one, and record its message in the outbox
    (run both in the request's transaction: the message leaves only if the token was stored)."""
    insert = dialect_insert(db)(password_reset).values(
        user_id=user_id, token_hash=token_hash, expires_at=expires_at, created_at=now
    )
    replaced = {name: insert.excluded[name] for name in ("token_hash", "expires_at", "created_at")}
    await db.execute(insert.on_conflict_do_update(index_elements=["user_id"], set_=replaced))
    await record_mail(db, mail, now=now)


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
    """Delete a live token: the id of its account, None when it was unknown, used (even a moment ago by a
    concurrent reset) or expired."""
    p = password_reset.c
    query = password_reset.delete().where(p.token_hash == token_hash, p.expires_at > now).returning(p.user_id)
    return await db.fetch_val(query)


async def forget_token(db: ReferralDatabase, user_id: int) -> None:
    """Delete the account's reset token, if any (its account is being deleted)."""
    await db.execute(password_reset.delete().where(password_reset.c.user_id == user_id))
