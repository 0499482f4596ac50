"""The skin tone around the lesion: jobs.skin_tone_ita, jobs.skin_tone_caveat and jobs.raised_by_skin_tone.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skin_tone_ita", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("skin_tone_caveat", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("raised_by_skin_tone", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("raised_by_skin_tone")
        batch_op.drop_column("skin_tone_caveat")
        batch_op.drop_column("skin_tone_ita")
