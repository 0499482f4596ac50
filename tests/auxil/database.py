"""Audit databases for tests, with the schema the product gets: through the Alembic migrations."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from shared.db import build_engine
from skinsense.migrate import upgrade_database


def migrated_engine(url: str) -> Engine:
    """An engine on ``url`` after ``skinsense db upgrade``'s migrations ran there."""
    upgrade_database(url)
    return build_engine(url)
