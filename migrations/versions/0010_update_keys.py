"""Updates are recognised by a key, not by update_id alone: the bot, the update id and the update's own content
(bot/durable_updates.update_key). Update ids start again with a new token or a fresh Bot API server (and at
random after a quiet week), and the id alone silenced every new message up to the old run's last id.

inbound_updates is rebuilt with ``update_key`` as its primary key (rows from before get ``legacy:<id>``, and the
bot gives them their real key when it replays them); jobs trade their unique ``update_id`` for ``update_key``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_PREFIX = "legacy:"


def upgrade() -> None:
    op.create_table(
        "inbound_updates_keyed",
        sa.Column("update_key", sa.String(length=96), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("sealed_update", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("update_key"),
    )
    op.execute(
        "INSERT INTO inbound_updates_keyed (update_key, update_id, sealed_update, received_at, processed_at, attempts) "
        f"SELECT '{LEGACY_PREFIX}' || CAST(update_id AS VARCHAR), update_id, sealed_update, received_at, "
        "processed_at, attempts FROM inbound_updates"
    )
    op.drop_index(op.f("ix_inbound_updates_processed_at"), table_name="inbound_updates")
    op.drop_table("inbound_updates")
    op.rename_table("inbound_updates_keyed", "inbound_updates")
    op.create_index(op.f("ix_inbound_updates_processed_at"), "inbound_updates", ["processed_at"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_key", sa.String(length=96), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_update_key"), ["update_key"], unique=True)
        batch_op.drop_index(batch_op.f("ix_jobs_update_id"))
        batch_op.drop_column("update_id")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_id", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_update_id"), ["update_id"], unique=True)
        batch_op.drop_index(batch_op.f("ix_jobs_update_key"))
        batch_op.drop_column("update_key")

    # Keys of different sources may share an update id: only the newest row of each id goes back.
    op.create_table(
        "inbound_updates_by_id",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sealed_update", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("update_id"),
    )
    op.execute(
        "INSERT INTO inbound_updates_by_id (update_id, sealed_update, received_at, processed_at, attempts) "
        "SELECT update_id, sealed_update, received_at, processed_at, attempts FROM inbound_updates AS newest "
        "WHERE NOT EXISTS (SELECT 1 FROM inbound_updates AS newer WHERE newer.update_id = newest.update_id "
        "AND (newer.received_at > newest.received_at OR "
        "(newer.received_at = newest.received_at AND newer.update_key > newest.update_key)))"
    )
    op.drop_index(op.f("ix_inbound_updates_processed_at"), table_name="inbound_updates")
    op.drop_table("inbound_updates")
    op.rename_table("inbound_updates_by_id", "inbound_updates")
    op.create_index(op.f("ix_inbound_updates_processed_at"), "inbound_updates", ["processed_at"], unique=False)
