"""clinician_alerts (the alert outbox and each alert's life with the clinicians), clinician_alert_deliveries
(each alert in each clinician chat, sent exactly once where Telegram allows it) and clinician_actions (every
press of an alert's buttons, refused ones included).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clinician_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("forwarded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed_photo", sa.String(length=1024), nullable=True),
        sa.Column("sealed_contact", sa.String(length=1024), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("patient_told_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("clinician_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinician_alerts_chat_ref"), ["chat_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_clinician_alerts_thread_id"), ["thread_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_clinician_alerts_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_clinician_alerts_state"), ["state"], unique=False)
    op.create_table(
        "clinician_alert_deliveries",
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("possibly_repeated", sa.Boolean(), nullable=False),
        sa.Column("photo_message_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", "chat_id", "kind"),
    )
    op.create_table(
        "clinician_actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("chat", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("user_name", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("clinician_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinician_actions_alert_id"), ["alert_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("clinician_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinician_actions_alert_id"))
    op.drop_table("clinician_actions")
    op.drop_table("clinician_alert_deliveries")
    with op.batch_alter_table("clinician_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinician_alerts_state"))
        batch_op.drop_index(batch_op.f("ix_clinician_alerts_created_at"))
        batch_op.drop_index(batch_op.f("ix_clinician_alerts_thread_id"))
        batch_op.drop_index(batch_op.f("ix_clinician_alerts_chat_ref"))
    op.drop_table("clinician_alerts")
