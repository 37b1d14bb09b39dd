"""Queries on users."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from databases.interfaces import Record

from referral.clock import utcnow
from referral.db.compiled import CompiledQuery
from referral.db.database import ReferralDatabase, insert_ignoring_conflict
from referral.db.tables import user
from referral.outbox.record import erase_email, record_event


async def insert_user(
    db: ReferralDatabase, *, email: str, password_hash: str, referrer_id: int | None = None
) -> int | None:
    """The new user's id, or None when the email is taken. Records `user.registered` (`referrer_id`: the
    owner of the code the user registered with), so run it in a transaction."""
    now = utcnow()
    query = (
        insert_ignoring_conflict(db, user, unique="email")
        .values(email=email, password_hash=password_hash, created_at=now)
        .returning(user.c.id)
    )
    user_id = await db.fetch_val(query)
    if user_id is not None:
        data = {"user_id": user_id, "email": email, "referrer_id": referrer_id}
        await record_event(db, "user.registered", data, now=now)
    return user_id


async def get_user_by_email(db: ReferralDatabase, email: str) -> Record | None:
    query = user.select().with_only_columns(user.c.id, user.c.password_hash, user.c.token_version)
    return await db.fetch_one(query.where(user.c.email == email))


async def get_user(db: ReferralDatabase, user_id: int) -> Record | None:
    query = user.select().with_only_columns(user.c.id, user.c.email, user.c.password_hash, user.c.token_version)
    return await db.fetch_one(query.where(user.c.id == user_id))


TOKEN_VERSION = CompiledQuery(
    sa.select(user.c.token_version).where(user.c.id == sa.bindparam("user_id"), user.c.deleted_at.is_(None))
)


async def token_version(db: ReferralDatabase, user_id: int) -> int | None:
    """The user's current token version, None when there is no such user (or it was deleted): checked on
    every authenticated request, so compiled once (`referral.db.compiled`)."""
    row = await TOKEN_VERSION.fetch_one(db, user_id=user_id)
    return None if row is None else row["token_version"]


async def end_sessions(db: ReferralDatabase, user_id: int, *, password_hash: str | None = None) -> int | None:
    """Raise the token version (every token issued so far stops working), optionally with a new password hash.

    Returns the new version, None when there is no such user.
    """
    values: dict[str, object] = {"token_version": user.c.token_version + 1}
    if password_hash is not None:
        values["password_hash"] = password_hash
    query = user.update().where(user.c.id == user_id).values(values).returning(user.c.token_version)
    return await db.fetch_val(query)


async def replace_password_hash(db: ReferralDatabase, user_id: int, *, old_hash: str, new_hash: str) -> None:
    """Store a rehash of the same password, unless the password changed meanwhile."""
    await db.execute(
        user.update().where(user.c.id == user_id, user.c.password_hash == old_hash).values(password_hash=new_hash)
    )


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


async def make_tombstone(db: ReferralDatabase, user_id: int, *, email: str, now: datetime) -> None:
    """Erase the account's email and password hash, stamp its deletion and end its tokens; the row stays so
    that codes, referrals and ids keep their references. The email leaves the outbox too, and
    `account.deleted` is recorded (run it in a transaction)."""
    await erase_email(db, email)
    values = {"email": None, "password_hash": None, "deleted_at": now, "token_version": user.c.token_version + 1}
    await db.execute(user.update().where(user.c.id == user_id).values(values))
    await record_event(db, "account.deleted", {"user_id": user_id}, now=now)


async def account_of(db: ReferralDatabase, user_id: int) -> Record | None:
    """The account's id, email and creation time, None once it is deleted."""
    query = sa.select(user.c.id, user.c.email, user.c.created_at)
    return await db.fetch_one(query.where(user.c.id == user_id, user.c.deleted_at.is_(None)))
