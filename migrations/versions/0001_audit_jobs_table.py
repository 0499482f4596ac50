"""The audit jobs table, as `create_all` made it before migrations existed (databases from then are
adopted at this revision by `skinsense db upgrade`).

Revision ID: 0001
Revises:
Create Date: 2026-11-25 22:49:29.191541
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("media_kind", sa.Enum("PHOTO", "DOCUMENT", name="mediakind"), nullable=False),
        sa.Column("telegram_file_unique_id", sa.String(length=128), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "status", sa.Enum("QUEUED", "RUNNING", "DONE", "FAILED", "REJECTED", name="jobstatus"), nullable=False
        ),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_reason", sa.String(length=500), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("ranking", sa.JSON(), nullable=True),
        sa.Column("risk", sa.String(length=16), nullable=True),
        sa.Column("melanoma_alert", sa.Boolean(), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clinicians_notified", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_chat_ref"), ["chat_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_jobs_received_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_chat_ref"))

    op.drop_table("jobs")
    # PostgreSQL keeps the enum types of the dropped columns.
    sa.Enum(name="jobstatus").drop(op.get_bind(), checkfirst=True)
    sa.Enum(name="mediakind").drop(op.get_bind(), checkfirst=True)
