"""inbound_updates: each Telegram update recorded (sealed) before it is acknowledged, until its handlers ran.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 02:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sealed_update", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("update_id"),
    )
    op.create_index(op.f("ix_inbound_updates_processed_at"), "inbound_updates", ["processed_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_inbound_updates_processed_at"), table_name="inbound_updates")
    op.drop_table("inbound_updates")
