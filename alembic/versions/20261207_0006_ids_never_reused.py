"""Ids never reused: SQLite's id columns become AUTOINCREMENT.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Without AUTOINCREMENT, SQLite hands the largest id again once its row is deleted, so a deleted account's
tokens would open the next account. Each table with an integer id is rebuilt with its rows, indexes and
constraints (`sqlite_sequence` starts at the largest id kept). PostgreSQL's sequences never hand out a
value twice: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("user", "referral_code", "referral", "outbox_event", "outbox_delivery")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
