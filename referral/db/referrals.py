"""Queries on referrals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases.interfaces import Record

from referral.db.compiled import CompiledQuery
from referral.db.database import ReferralDatabase, dialect_insert, insert_ignoring_conflict
from referral.db.tables import referral, referral_code, referral_count
from referral.outbox.record import iso_date, record_event


async def insert_referral(
    db: ReferralDatabase,
    *,
    email: str,
    mailbox: str,
    code_id: int,
    code: str,
    referrer_id: int,
    user_id: int | None,
    now: datetime,
) -> int | None:
    """The new referral's id, or None when the email or its mailbox is already a referral. Records
    `referral.registered` (`code`: the string of `code_id`), so run it in a transaction."""
    query = (
        insert_ignoring_conflict(db, referral)
        .values(email=email, mailbox=mailbox, code_id=code_id, referrer_id=referrer_id, user_id=user_id, created_at=now)
        .returning(referral.c.id)
    )
    referral_id = await db.fetch_val(query)
    if referral_id is not None:
        data = {
            "referral_id": referral_id,
            "email": email,
            "user_id": user_id,
            "referrer_id": referrer_id,
            "code": code,
        }
        await record_event(db, "referral.registered", data, now=now)
    return referral_id


REFERRAL_PAGE = CompiledQuery(
    sa.select(
        referral.c.id,
        referral.c.email,
        referral_code.c.user_id,
        referral_code.c.code,
        referral_code.c.expires_at,
        referral.c.status,
        referral.c.qualified_at,
        sa.select(referral_count.c.total)
        .where(referral_count.c.referrer_id == sa.bindparam("referrer_id"))
        .scalar_subquery()
        .label("total"),
    )
    .select_from(referral.join(referral_code, referral.c.code_id == referral_code.c.id))
    .where(referral.c.referrer_id == sa.bindparam("referrer_id"))
    .order_by(referral.c.id)
    .limit(sa.bindparam("limit"))
    .offset(sa.bindparam("offset"))
)


async def list_referrals(db: ReferralDatabase, *, referrer_id: int, limit: int, offset: int) -> list[Mapping[str, Any]]:
    """One page of a referrer's referrals, oldest first, each with the code it used and the referrer's
    total (`total`, the same on every row): one round trip, compiled once (`referral.db.compiled`)."""
    return await REFERRAL_PAGE.fetch_all(db, referrer_id=referrer_id, limit=limit, offset=offset)


async def count_one_more(db: ReferralDatabase, *, referrer_id: int) -> None:
    """Add one to the referrer's total (run in the transaction that inserts the referral)."""
    query = (
        dialect_insert(db)(referral_count)
        .values(referrer_id=referrer_id, total=1)
        .on_conflict_do_update(index_elements=["referrer_id"], set_={"total": referral_count.c.total + 1})
    )
    await db.execute(query)


async def count_referrals(db: ReferralDatabase, *, referrer_id: int) -> int:
    query = sa.select(referral_count.c.total).where(referral_count.c.referrer_id == referrer_id)
    return await db.fetch_val(query) or 0


async def counts_of(db: ReferralDatabase, *, referrer_id: int) -> tuple[int, int]:
    """The referrer's referrals and qualified referrals, from the counters (never counting rows)."""
    query = sa.select(referral_count.c.total, referral_count.c.qualified).where(
        referral_count.c.referrer_id == referrer_id
    )
    row = await db.fetch_one(query)
    return (row["total"], row["qualified"]) if row is not None else (0, 0)


INTEGRATION_COLUMNS = (
    referral.c.id,
    referral.c.email,
    referral_code.c.code,
    referral.c.referrer_id,
    referral.c.status,
    referral.c.qualified_at,
    referral.c.reference,
)


async def qualify(db: ReferralDatabase, referral_id: int, *, reference: str | None, now: datetime) -> bool:
    """Mark a registered referral qualified, count it for its referrer and record `referral.qualified`:
    whether it was registered until now (False: unknown, or qualified before). One conditional UPDATE, so of
    concurrent calls exactly one qualifies it; run it in a transaction."""
    r = referral.c
    query = (
        referral.update()
        .where(r.id == referral_id, r.status == "registered")
        .values(status="qualified", qualified_at=now, reference=reference)
        .returning(r.referrer_id, r.code_id)
    )
    row = await db.fetch_one(query)
    if row is None:
        return False
    counted = (
        referral_count.update()
        .where(referral_count.c.referrer_id == row["referrer_id"])
        .values(qualified=referral_count.c.qualified + 1)
    )
    await db.execute(counted)
    code = await db.fetch_val(sa.select(referral_code.c.code).where(referral_code.c.id == row["code_id"]))
    data = {
        "referral_id": referral_id,
        "referrer_id": row["referrer_id"],
        "code": code,
        "qualified_at": iso_date(now),
        "reference": reference,
    }
    await record_event(db, "referral.qualified", data, now=now)
    return True


async def get_for_integration(db: ReferralDatabase, referral_id: int) -> Record | None:
    query = (
        sa.select(*INTEGRATION_COLUMNS)
        .select_from(referral.join(referral_code, referral.c.code_id == referral_code.c.id))
        .where(referral.c.id == referral_id)
    )
    return await db.fetch_one(query)


async def list_for_integration(db: ReferralDatabase, *, after_id: int, limit: int, status: str | None) -> list[Record]:
    """Every user's referrals after `after_id`, oldest first (keyset pagination: a page never repeats or
    skips a row, whatever is inserted meanwhile)."""
    query = (
        sa.select(*INTEGRATION_COLUMNS)
        .select_from(referral.join(referral_code, referral.c.code_id == referral_code.c.id))
        .where(referral.c.id > after_id)
        .order_by(referral.c.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(referral.c.status == status)
    return await db.fetch_all(query)


async def erase_referral_of(db: ReferralDatabase, *, user_id: int, email: str, erased_mailbox: str) -> None:
    """The referral a deleted account came from (by its account, or by its email) keeps its place in the
    referrer's list and counts, without the email: its mailbox is kept only as `erased_mailbox`."""
    r = referral.c
    rows = await db.fetch_all(sa.select(r.id).where(sa.or_(r.user_id == user_id, r.email == email)).order_by(r.id))
    for number, row in enumerate(rows):  # one mailbox had one referral; older rows without one get no key
        values = {"email": None, "mailbox": None, "erased_mailbox": erased_mailbox if number == 0 else None}
        await db.execute(referral.update().where(r.id == row.id).values(values))


async def mailbox_was_erased(db: ReferralDatabase, erased_mailbox: str) -> bool:
    """True when a deleted account's referral had this mailbox (its key: `erased_mailbox`)."""
    return bool(await db.fetch_val(sa.select(sa.exists().where(referral.c.erased_mailbox == erased_mailbox))))


async def referrals_made_by(db: ReferralDatabase, referrer_id: int) -> list[Record]:
    """Every referral registered with the user's codes, oldest first, with its code (`/user/export`)."""
    r = referral.c
    query = (
        sa.select(r.id, r.email, referral_code.c.code, r.status, r.qualified_at, r.created_at)
        .join(referral_code, referral_code.c.id == r.code_id)
        .where(r.referrer_id == referrer_id)
        .order_by(r.id)
    )
    return await db.fetch_all(query)


async def referral_of(db: ReferralDatabase, *, user_id: int, email: str) -> Record | None:
    """The referral the user came from (by their account, or by their email), with its code, if any."""
    r = referral.c
    query = (
        sa.select(referral_code.c.code, r.referrer_id, r.created_at)
        .join(referral_code, referral_code.c.id == r.code_id)
        .where(sa.or_(r.user_id == user_id, r.email == email))
        .order_by(r.id)
        .limit(1)
    )
    return await db.fetch_one(query)
