"""The audit schema is owned by the Alembic migrations: they build exactly what the models describe."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import shared.audit  # noqa: F401  (the models' tables on SQLModel.metadata)
from bot.durable_updates import InboundUpdateStore, update_key
from shared.config import Settings, parse_keys
from shared.db import build_engine
from shared.sealing import Sealer
from skinsense.migrate import BASELINE_REVISION, head_revision, upgrade_database
from tests.auxil.services import child_env, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    else:
        with postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
            yield url


def pending_differences(url: str) -> list[object]:
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def stored_revision(url: str) -> str:
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


def test_db_upgrade_on_an_empty_database_builds_the_models_schema(empty_database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "db", "upgrade"],
        env=child_env(database_url=empty_database_url),
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert stored_revision(empty_database_url) == head_revision()
    assert pending_differences(empty_database_url) == [], "a model change has no migration"


def test_upgrade_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
    upgrade_database(url)
    upgrade_database(url)
    assert stored_revision(url) == head_revision()


def test_a_table_made_before_migrations_is_adopted_and_upgraded(empty_database_url: str) -> None:
    """The first release built the table with create_all and had no alembic_version: upgrade adopts it."""
    upgrade_database(empty_database_url, revision=BASELINE_REVISION)
    engine = build_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
            assert "photo_kind" not in {c["name"] for c in inspect(connection).get_columns("jobs")}
    finally:
        engine.dispose()
    upgrade_database(empty_database_url)
    assert stored_revision(empty_database_url) == head_revision()
    assert pending_differences(empty_database_url) == []


def test_an_update_recorded_before_update_keys_is_replayed_once_under_its_key(empty_database_url: str) -> None:
    """Migration 0010: an update recorded (and not handled) by a bot from before update keys keeps its sealed
    content; the new bot replays it under its real key, so marking it processed finds it (never replayed again)."""
    upgrade_database(empty_database_url, revision="0009")
    sealer = Sealer(parse_keys(Settings().delivery_key))
    payload = {
        "update_id": 7,
        "message": {"message_id": 3, "date": 1795660000, "chat": {"id": 55, "type": "private"}, "text": "hi"},
    }
    engine = build_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO inbound_updates (update_id, sealed_update, received_at, attempts) "
                    "VALUES (7, :sealed, CURRENT_TIMESTAMP, 0)"
                ),
                {"sealed": sealer.seal(payload)},
            )
        upgrade_database(empty_database_url)
        store = InboundUpdateStore(engine, sealer)
        key = update_key("4242", payload)
        assert [(k, p["message"]["text"]) for k, p in store.unprocessed("4242")] == [(key, "hi")]
        store.mark_processed(key)
        assert list(store.unprocessed("4242")) == []
    finally:
        engine.dispose()
    assert pending_differences(empty_database_url) == []


@pytest.mark.postgres
def test_hosts_upgrading_at_once_migrate_once(postgres_admin_url: str) -> None:
    """Several hosts run `skinsense db upgrade` as they start: the advisory lock lets one migrate while the
    others wait, and every one of them ends at head without an error."""
    with postgres_database(postgres_admin_url) as url:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for done in [pool.submit(upgrade_database, url) for _ in range(3)]:
                done.result()
        assert stored_revision(url) == head_revision()
        assert pending_differences(url) == []
