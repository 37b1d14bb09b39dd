"""Program rules: a use limit and a use count on codes, a status on referrals, qualified counts, and an
index of each user's codes (the partial unique index of live codes cannot serve a query for all of them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Back-fills each code's `uses` from its referrals; existing referrals are `registered` and no referrer
has a qualified one yet.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("referral_code", sa.Column("max_uses", sa.Integer(), nullable=True))
    op.add_column("referral_code", sa.Column("uses", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE referral_code SET uses = (SELECT count(*) FROM referral WHERE referral.code_id = referral_code.id) "
        "WHERE EXISTS (SELECT 1 FROM referral WHERE referral.code_id = referral_code.id)"
    )
    op.create_index("ix_referral_code_user_id_id", "referral_code", ["user_id", "id"])
    op.add_column("referral", sa.Column("status", sa.String(length=16), server_default="registered", nullable=False))
    op.add_column("referral", sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("referral", sa.Column("reference", sa.String(length=128), nullable=True))
    op.create_index("ix_referral_status_id", "referral", ["status", "id"])
    op.add_column("referral_count", sa.Column("qualified", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("referral_count") as batch:
        batch.drop_column("qualified")
    op.drop_index("ix_referral_status_id", table_name="referral")
    op.drop_index("ix_referral_code_user_id_id", table_name="referral_code")
    with op.batch_alter_table("referral") as batch:
        batch.drop_column("reference")
        batch.drop_column("qualified_at")
        batch.drop_column("status")
    with op.batch_alter_table("referral_code") as batch:
        batch.drop_column("uses")
        batch.drop_column("max_uses")
