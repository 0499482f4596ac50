"""clinician_alerts: the clinician's conclusion, referral and the biopsy's result; clinician_actions.detail.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("conclusion", sa.String(length=16)),
    ("concluded_by", sa.String(length=128)),
    ("concluded_at", sa.DateTime(timezone=True)),
    ("referral", sa.String(length=16)),
    ("referred_by", sa.String(length=128)),
    ("referred_at", sa.DateTime(timezone=True)),
    ("biopsy_result", sa.String(length=16)),
    ("biopsy_by", sa.String(length=128)),
    ("biopsy_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("clinician_alerts", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("clinician_actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clinician_actions", schema=None) as batch_op:
        batch_op.drop_column("detail")
    with op.batch_alter_table("clinician_alerts", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
