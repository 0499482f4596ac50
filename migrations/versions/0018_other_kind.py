"""A photo of uncertain kind: jobs.other_kind_risk and jobs.other_kind_alert (the other kind's network's result).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("other_kind_risk", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("other_kind_alert", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("other_kind_alert")
        batch_op.drop_column("other_kind_risk")
