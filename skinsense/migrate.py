"""``skinsense db upgrade``: bring the audit database to the newest schema with the Alembic migrations in
``migrations/``. The only place, besides the migration test, where the schema is created."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

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
