"""jobs gain what the reconciler and idempotent intake need: the sealed delivery data (chat id, the
"Analysing..." message, Telegram's file id; shared/sealing.py), the Telegram update that brought the photo
(unique), when the job is overdue, how often the reconciler queued it again, and when the patient was told it
takes longer than usual.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("update_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("slow_notice_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_update_id"), ["update_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_jobs_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_due_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_update_id"))
        batch_op.drop_column("slow_notice_at")
        batch_op.drop_column("requeues")
        batch_op.drop_column("due_at")
        batch_op.drop_column("update_id")
        batch_op.drop_column("delivery")
