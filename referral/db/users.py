"""Queries on users."""

from __future__ import annotations

from databases.interfaces import Record

from referral.clock import utcnow
from referral.db.database import ReferralDatabase, insert_ignoring_conflict
from referral.db.tables import user


async def insert_user(db: ReferralDatabase, *, email: str, password_hash: str) -> int | None:
    """The new user's id, or None when the email is taken."""
    query = (
        insert_ignoring_conflict(db, user, unique="email")
        .values(email=email, password_hash=password_hash, created_at=utcnow())
        .returning(user.c.id)
    )
    return await db.fetch_val(query)


async def get_user_by_email(db: ReferralDatabase, email: str) -> Record | None:
    return await db.fetch_one(user.select().where(user.c.email == email))


async def user_exists(db: ReferralDatabase, user_id: int) -> bool:
    return await db.fetch_val(user.select().with_only_columns(user.c.id).where(user.c.id == user_id)) is not None


async def lock_user(db: ReferralDatabase, user_id: int) -> Record | None:
    """The user's row, locked until the transaction ends (PostgreSQL; SQLite locks the whole file).

    `FOR NO KEY UPDATE`, not `FOR UPDATE`: inserting a referral checks its foreign key to the user
    with `FOR KEY SHARE`, which must not wait for this lock (that wait deadlocked code deletion
    against a concurrent referral registration).
    """
    query = user.select().where(user.c.id == user_id)
    if not db.is_sqlite:
        query = query.with_for_update(key_share=True)
    return await db.fetch_one(query)
