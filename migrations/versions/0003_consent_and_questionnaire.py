"""consents and patient_profiles tables; jobs gain the questionnaire's answers, when it closed, the photo-only
ranking and the answers the final result used.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:40:53.091029
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("text_version", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_chat_ref"), ["chat_ref"], unique=False)
    op.create_table(
        "patient_profiles",
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("age_range", sa.String(length=8), nullable=True),
        sa.Column("sex", sa.String(length=8), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_ref"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("answers_closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("photo_ranking", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("answers_used", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("answers_used")
        batch_op.drop_column("photo_ranking")
        batch_op.drop_column("answers_closed_at")
        batch_op.drop_column("answers")
    op.drop_table("patient_profiles")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_chat_ref"))
    op.drop_table("consents")
