"""Token versions (logout, password change) and the canonical mailbox of each referral.

Existing referrals get their canonical mailbox; where several share one, the oldest keeps it and the
others are left without (they stay listed, but no longer block anything).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from referral.services.mailboxes import canonical_mailbox

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

referral = sa.table("referral", sa.column("id", sa.Integer), sa.column("email"), sa.column("mailbox"))


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("referral") as batch:
        batch.add_column(sa.Column("mailbox", sa.String(320), nullable=True))
    connection = op.get_bind()
    seen: set[str] = set()
    for row in connection.execute(sa.select(referral.c.id, referral.c.email).order_by(referral.c.id)):
        mailbox = canonical_mailbox(row.email)
        if mailbox not in seen:
            seen.add(mailbox)
            connection.execute(referral.update().where(referral.c.id == row.id).values(mailbox=mailbox))
    with op.batch_alter_table("referral") as batch:
        batch.create_unique_constraint(op.f("uq_referral_mailbox"), ["mailbox"])


def downgrade() -> None:
    with op.batch_alter_table("referral") as batch:
        batch.drop_constraint(op.f("uq_referral_mailbox"), type_="unique")
        batch.drop_column("mailbox")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("token_version")
