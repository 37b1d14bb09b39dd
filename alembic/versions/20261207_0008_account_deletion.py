"""Account deletion: users become tombstones (no email, no password hash, a deletion time), and a deleted
referral keeps an HMAC of its mailbox instead of its email and mailbox.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

SQLite rebuilds both tables (keeping AUTOINCREMENT, migration 0006). The downgrade refuses a database
that holds a deleted account: its rows have no email to put back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("user", table_kwargs=AUTOINCREMENT) as batch:
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=True)
        batch.alter_column("password_hash", existing_type=sa.String(length=100), nullable=True)
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("referral", table_kwargs=AUTOINCREMENT) as batch:
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=True)
        batch.add_column(sa.Column("erased_mailbox", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_referral_erased_mailbox"), ["erased_mailbox"])


def downgrade() -> None:
    deleted = op.get_bind().execute(sa.text('SELECT count(*) FROM "user" WHERE deleted_at IS NOT NULL')).scalar()
    if deleted:
        raise RuntimeError(f"{deleted} deleted accounts: 0007 cannot hold them (no email to restore)")
    with op.batch_alter_table("referral", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_constraint(op.f("uq_referral_erased_mailbox"), type_="unique")
        batch.drop_column("erased_mailbox")
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
    with op.batch_alter_table("user", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_column("deleted_at")
        batch.alter_column("password_hash", existing_type=sa.String(length=100), nullable=False)
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
