"""jobs gain album_id: the photos a patient sent together (one Telegram album) share it and get one reply;
album_position orders them as the patient sent them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 02:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("album_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("album_position", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_album_id"), ["album_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_album_id"))
        batch_op.drop_column("album_position")
        batch_op.drop_column("album_id")
