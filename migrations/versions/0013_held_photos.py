"""held_photos: photos sent before the privacy question was answered, sealed, for at most an hour.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_photos",
        sa.Column("update_key", sa.String(length=96), nullable=False),
        sa.Column("chat_ref", sa.String(length=64), nullable=False),
        sa.Column("sealed_message", sa.Text(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("update_key"),
    )
    with op.batch_alter_table("held_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_photos_chat_ref"), ["chat_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("held_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_held_photos_chat_ref"))
    op.drop_table("held_photos")
