"""``skinsense db upgrade``: bring the audit database to the newest schema with the Alembic migrations in
``migrations/``. The only place, besides the migration test, where the schema is created."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from shared.config import get_settings
from shared.db import build_engine

log = logging.getLogger(__name__)

# The schema that `create_all` made before migrations existed: such a database is adopted at this revision.
BASELINE_REVISION = "0001"


def migrations_dir() -> Path:
    """``migrations/`` beside the packages in a checkout; in the current folder in the Docker image."""
    for candidate in (Path(__file__).resolve().parents[1] / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the migrations/ folder was not found")


MIGRATION_LOCK_KEY = 0x5C1F5E45  # PostgreSQL advisory lock id that serialises `skinsense db upgrade`


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    engine = build_engine(url or get_settings().database_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Hosts started together each run `skinsense db upgrade`: one migrates, the others wait for it
                # here (held until this transaction ends) and then find nothing left to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = connection
            tables = set(inspect(connection).get_table_names())
            if "jobs" in tables and "alembic_version" not in tables:
                log.info("audit table made before migrations: adopting it at revision %s", BASELINE_REVISION)
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info("audit database at revision %s", revision if revision != "head" else head_revision())
