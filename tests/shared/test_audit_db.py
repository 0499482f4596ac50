"""The audit table on SQLite (WAL) and PostgreSQL, and its CLI listing and CSV export."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from shared.audit import Job, JobStatus, MediaKind, chat_reference, utc_now
from shared.db import build_engine
from shared.labels import RiskLevel
from shared.logs import RedactSecrets
from shared.outcomes import RefusalCode
from tests.auxil.database import migrated_engine
from tests.auxil.services import child_env, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    else:
        with postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
            yield url


def test_job_row_round_trips_with_all_audit_fields(database_url: str) -> None:
    engine = migrated_engine(database_url)
    now = utc_now()
    ranking = [{"code": "nv", "name": "Melanocytic nevus", "probability": 0.9}]
    notified = {"9001": now.isoformat()}
    job = Job(
        chat_ref=chat_reference(42, "key"),
        media_kind=MediaKind.PHOTO,
        telegram_file_unique_id="AQADxyz",
        status=JobStatus.DONE,
        image_sha256="ab" * 32,
        model_version="v1",
        ranking=ranking,
        risk=RiskLevel.LOW,
        melanoma_alert=False,
        queued_at=now,
        started_at=now + timedelta(seconds=1),
        finished_at=now + timedelta(seconds=2),
        replied_at=now + timedelta(seconds=3),
        clinicians_notified=notified,
    )
    with Session(engine) as session:
        session.add(job)
        session.commit()
    with Session(engine) as session:
        stored = session.exec(select(Job)).one()
    assert stored.ranking == ranking and stored.clinicians_notified == notified
    assert stored.status == JobStatus.DONE and stored.replied_at is not None
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_chat_reference_is_keyed_and_stable() -> None:
    assert chat_reference(42, "key") == chat_reference(42, "key")
    assert chat_reference(42, "key") != chat_reference(42, "other key")
    reference = chat_reference(42, "key")
    assert len(reference) == 32 and int(reference, 16) != 42


def test_audit_cli_lists_and_exports_csv(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    engine = migrated_engine(url)
    with Session(engine) as session:
        session.add(
            Job(
                chat_ref="c" * 32,
                media_kind=MediaKind.DOCUMENT,
                status=JobStatus.REJECTED,
                error_code=RefusalCode.NOT_AN_IMAGE,
                error_reason="document of type application/pdf",
            )
        )
        session.add(
            Job(
                chat_ref="d" * 32,
                media_kind=MediaKind.PHOTO,
                status=JobStatus.DONE,
                risk=RiskLevel.HIGH,
                melanoma_alert=True,
                ranking=[{"code": "mel", "name": "Melanoma", "probability": 0.7}],
            )
        )
        session.commit()
    env = child_env(database_url=url)
    listing = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "audit"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "rejected" in listing and "not_an_image" in listing and "top=mel" in listing
    exported = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "audit", "--csv", "-"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == 2
    assert {r["status"] for r in rows} == {"rejected", "done"}
    assert "chat_ref" in rows[0] and "image_sha256" in rows[0]


def test_a_database_error_names_the_statement_never_the_patients_values(database_url: str) -> None:
    """Error texts reach logs and tracebacks: SQLAlchemy hides the statement's values, and the log filter hides
    the values PostgreSQL quotes in its details."""
    engine = migrated_engine(database_url)
    chat_ref = chat_reference(424242, "error-text-key")
    job = Job(chat_ref=chat_ref, media_kind=MediaKind.PHOTO, telegram_file_unique_id="u", status=JobStatus.QUEUED)
    with Session(engine) as session:
        session.add(job)
        session.commit()
        session.refresh(job)
    duplicate = Job(id=job.id, chat_ref=chat_ref, media_kind=MediaKind.PHOTO, status=JobStatus.QUEUED)
    with Session(engine) as session, pytest.raises(Exception) as raised:
        session.add(duplicate)
        session.commit()
    error_text = str(raised.value)
    assert "INSERT INTO jobs" in error_text and "parameters hidden" in error_text
    assert chat_ref not in RedactSecrets([]).redact(error_text)
    engine.dispose()
