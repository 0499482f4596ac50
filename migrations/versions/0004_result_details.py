"""jobs gain what the patient read with the result: which answers raised or lowered the risk, and the
measured reliability quoted for the photo's kind (so /history shows a past result as it was sent).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer_effects", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("malignant_told_low_per_100", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("malignant_told_low_per_100")
        batch_op.drop_column("answer_effects")
