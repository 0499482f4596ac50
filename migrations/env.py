"""Alembic environment: the audit database's schema is owned by these migrations, not by ``create_all``.

Run through ``skinsense db upgrade`` (see ``skinsense/migrate.py``); plain ``alembic`` works too and
reads ``SKINSENSE_DATABASE_URL`` through the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import shared.audit  # noqa: F401  (registers the tables on SQLModel.metadata)
from shared.config import get_settings
from shared.db import build_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = build_engine(config.get_main_option("sqlalchemy.url") or get_settings().database_url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_online()
