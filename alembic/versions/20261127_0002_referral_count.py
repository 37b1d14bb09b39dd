"""Per-referrer referral totals, so a list page never counts the whole list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral_count",
        sa.Column("referrer_id", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["user.id"], name=op.f("fk_referral_count_referrer_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("referrer_id", name=op.f("pk_referral_count")),
    )
    op.execute(
        "INSERT INTO referral_count (referrer_id, total) "
        "SELECT referrer_id, count(*) FROM referral GROUP BY referrer_id"
    )


def downgrade() -> None:
    op.drop_table("referral_count")
