"""jobs gain same_photo_as: the earlier job of the same patient with the same photo (same SHA-256), whose result
a repeated photo gets again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 02:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("same_photo_as", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("same_photo_as")
