"""The same spot over time: jobs.same_spot_as and jobs.spot_change; spot_followups (reminders to photograph a spot
again).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("same_spot_as", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("spot_change", sa.JSON(), nullable=True))
    op.create_table(
        "spot_followups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prompt_message_id", sa.BigInteger(), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("spot_followups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spot_followups_chat_ref"), ["chat_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_spot_followups_remind_at"), ["remind_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("spot_followups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spot_followups_remind_at"))
        batch_op.drop_index(batch_op.f("ix_spot_followups_chat_ref"))
    op.drop_table("spot_followups")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("spot_change")
        batch_op.drop_column("same_spot_as")
