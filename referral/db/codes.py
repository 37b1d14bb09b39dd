"""Queries on referral codes.

A code is *live* while `retired_at` is null (at most one per user, enforced by a partial unique
index) and *active* while it is live and `expires_at` is in the future.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases.interfaces import Record

from referral.db.compiled import CompiledQuery
from referral.db.database import ReferralDatabase, insert_ignoring_conflict
from referral.db.tables import referral_code, user
from referral.outbox.record import iso_date, record_event

CODE_COLUMNS = (
    referral_code.c.id,
    referral_code.c.user_id,
    referral_code.c.code,
    referral_code.c.expires_at,
    referral_code.c.max_uses,
)


async def get_live_code(db: ReferralDatabase, user_id: int) -> Record | None:
    query = sa.select(*CODE_COLUMNS).where(referral_code.c.user_id == user_id, referral_code.c.retired_at.is_(None))
    return await db.fetch_one(query)


ACTIVE_CODE_BY_EMAIL = CompiledQuery(
    sa.select(*CODE_COLUMNS)
    .select_from(user.join(referral_code, referral_code.c.user_id == user.c.id))
    .where(
        user.c.email == sa.bindparam("email"),
        referral_code.c.retired_at.is_(None),
        referral_code.c.expires_at > sa.bindparam("now"),
    )
)


async def get_active_code_by_email(db: ReferralDatabase, email: str, *, now: datetime) -> Mapping[str, Any] | None:
    """The hot read behind getcode on a cache miss: compiled once (`referral.db.compiled`)."""
    return await ACTIVE_CODE_BY_EMAIL.fetch_one(db, email=email, now=now)


async def get_code_for_use(db: ReferralDatabase, code: str) -> Record | None:
    """The code with its owner's email, locked on PostgreSQL (`FOR NO KEY UPDATE`) so it cannot be retired
    meanwhile and its use can be counted (`use_code`) without a lock upgrade that concurrent registrations
    would deadlock on."""
    query = (
        sa.select(*CODE_COLUMNS, referral_code.c.retired_at, user.c.email.label("owner_email"))
        .select_from(referral_code.join(user, referral_code.c.user_id == user.c.id))
        .where(referral_code.c.code == code)
    )
    if not db.is_sqlite:
        query = query.with_for_update(key_share=True, of=referral_code)
    return await db.fetch_one(query)


def code_event(user_id: int, code: str, expires_at: datetime, max_uses: int | None) -> dict[str, Any]:
    """The data of `code.issued` and `code.updated`."""
    return {"user_id": user_id, "code": code, "exp_date": iso_date(expires_at), "max_uses": max_uses}


async def use_code(db: ReferralDatabase, code_id: int) -> bool:
    """Count one more use of the code unless it reached its `max_uses`: whether it was counted. A single
    conditional UPDATE, so concurrent registrations queue on the row and exactly `max_uses` of them get it
    (run it in the registering transaction: a rollback gives the use back)."""
    c = referral_code.c
    query = (
        referral_code.update()
        .where(c.id == code_id, sa.or_(c.max_uses.is_(None), c.uses < c.max_uses))
        .values(uses=c.uses + 1)
        .returning(c.id)
    )
    return await db.fetch_val(query) is not None


async def codes_of_user(db: ReferralDatabase, user_id: int) -> list[Record]:
    """Every code the user was ever issued, newest first, with its uses (`/refer/stats`, `/user/export`)."""
    c = referral_code.c
    query = (
        sa.select(c.code, c.expires_at, c.retired_at, c.uses, c.max_uses, c.created_at)
        .where(c.user_id == user_id)
        .order_by(c.id.desc())
    )
    return await db.fetch_all(query)


async def insert_code(
    db: ReferralDatabase, *, user_id: int, code: str, expires_at: datetime, max_uses: int | None, now: datetime
) -> int | None:
    """The new code's id, or None when the code string was ever used before. Records `code.issued`, so run
    it in a transaction."""
    query = (
        insert_ignoring_conflict(db, referral_code, unique="code")
        .values(user_id=user_id, code=code, expires_at=expires_at, max_uses=max_uses, created_at=now)
        .returning(referral_code.c.id)
    )
    code_id = await db.fetch_val(query)
    if code_id is not None:
        await record_event(db, "code.issued", code_event(user_id, code, expires_at, max_uses), now=now)
    return code_id


async def edit_code(
    db: ReferralDatabase, live: Mapping[str, Any], *, expires_at: datetime, max_uses: int | None, now: datetime
) -> None:
    """Give the live code (a row of `get_live_code`) a new expiry and use limit; records `code.updated`."""
    query = (
        referral_code.update().where(referral_code.c.id == live["id"]).values(expires_at=expires_at, max_uses=max_uses)
    )
    await db.execute(query)
    data = code_event(live["user_id"], live["code"], expires_at, max_uses)
    await record_event(db, "code.updated", data, now=now)


async def retire_code(db: ReferralDatabase, code_id: int, *, now: datetime) -> None:
    """Retire a code that expired or is being replaced: no event (the new code's `code.issued` says it)."""
    await db.execute(
        referral_code.update()
        .where(referral_code.c.id == code_id, referral_code.c.retired_at.is_(None))
        .values(retired_at=now)
    )


async def retire_codes_of(db: ReferralDatabase, user_id: int, *, now: datetime) -> None:
    """Retire every code of a user whose account is deleted (`account.deleted` says it)."""
    codes = referral_code.c
    await db.execute(
        referral_code.update().where(codes.user_id == user_id, codes.retired_at.is_(None)).values(retired_at=now)
    )


async def delete_code(db: ReferralDatabase, live: Mapping[str, Any], *, now: datetime) -> None:
    """Retire the live code (a row of `get_live_code`) at its owner's request; records `code.deleted`."""
    await retire_code(db, live["id"], now=now)
    data = {"user_id": live["user_id"], "code": live["code"], "exp_date": iso_date(live["expires_at"])}
    await record_event(db, "code.deleted", data, now=now)
