"""Retention: ``skinsense audit purge`` erases patient data past retention and leaves non-identifying
tombstones; rows inside retention are untouched; the workers' beat runs the purge daily."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from shared.audit import Consent, ConsentDecision, Job, JobStatus, MediaKind, PatientProfile, utc_now
from shared.config import Settings
from shared.labels import RiskLevel
from shared.outcomes import RefusalCode
from shared.retention import MINIMUM_RETENTION_DAYS, PURGED_CHAT_REF
from tests.auxil.database import migrated_engine
from tests.auxil.services import child_env

OLD = utc_now() - timedelta(days=400)
RECENT = utc_now() - timedelta(days=30)
PATIENT_COLUMNS = (
    "telegram_file_unique_id",
    "image_sha256",
    "error_reason",
    "ranking",
    "photo_ranking",
    "answers",
    "answers_used",
    "skin_tone_ita",
    "skin_tone_caveat",
    "raised_by_skin_tone",
    "clinicians_notified",
)


def _job(chat_ref: str, received_at: Any, **fields: Any) -> Job:
    return Job(
        chat_ref=chat_ref,
        media_kind=MediaKind.PHOTO,
        telegram_file_unique_id="AgADfile" + chat_ref[:4],
        image_sha256="f" * 64,
        model_version="ba938f43583b356d",
        received_at=received_at,
        started_at=received_at + timedelta(seconds=1),
        finished_at=received_at + timedelta(seconds=2),
        **fields,
    )


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, Path, dict[str, uuid.UUID]]:
    path = tmp_path / "audit.sqlite3"
    url = f"sqlite:///{path}"
    done = dict(
        status=JobStatus.DONE,
        risk=RiskLevel.HIGH,
        melanoma_alert=True,
        ranking=[{"code": "mel", "probability": 0.6}],
        photo_ranking=[{"code": "mel", "probability": 0.5}],
        answers={"age": 47, "sex": "female", "bleeds": True},
        answers_used=["age", "bleeds"],
        skin_tone_ita=-38.5,
        skin_tone_caveat=True,
        raised_by_skin_tone=False,
        clinicians_notified={"-100": OLD.isoformat()},
    )
    jobs = {
        "old_done": _job("a" * 32, OLD, **done),
        "old_rejected": _job(
            "b" * 32, OLD, status=JobStatus.REJECTED, error_code=RefusalCode.TOO_DARK, error_reason="too dark"
        ),
        "recent_done": _job("a" * 32, RECENT, **done),
    }
    with Session(migrated_engine(url)) as session:
        session.add_all(jobs.values())
        session.add(Consent(chat_ref="a" * 32, text_version="1", decision=ConsentDecision.AGREED, decided_at=OLD))
        session.add(Consent(chat_ref="c" * 32, text_version="1", decision=ConsentDecision.AGREED, decided_at=RECENT))
        session.add(PatientProfile(chat_ref="a" * 32, age_range="40-49", sex="female", updated_at=OLD))
        session.add(PatientProfile(chat_ref="c" * 32, age_range="60-69", sex="male", updated_at=RECENT))
        session.commit()
        ids = {name: job.id for name, job in jobs.items()}
    return url, path, ids


def purge(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "audit", "purge", *arguments],
        env=child_env(database_url=url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(path: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return list(connection.execute(query))


def job_row(path: Path, job_id: uuid.UUID) -> sqlite3.Row:
    (row,) = rows(path, f"SELECT * FROM jobs WHERE id = '{job_id.hex}'")
    return row


def test_purge_keeps_tombstones_and_erases_the_patient_data(database: tuple[str, Path, dict[str, uuid.UUID]]) -> None:
    url, path, ids = database
    before = {name: dict(job_row(path, job_id)) for name, job_id in ids.items()}

    result = purge(url, "--older-than", "183")
    assert result.returncode == 0, result.stderr
    assert "2 jobs left as tombstones, 1 consents, 1 profiles and 0 reminders deleted" in result.stdout

    for name in ("old_done", "old_rejected"):
        tombstone = dict(job_row(path, ids[name]))
        assert tombstone["chat_ref"] == PURGED_CHAT_REF, name
        for column in PATIENT_COLUMNS:
            assert tombstone[column] is None, (name, column)  # SQL NULL, not the JSON text 'null'
        kept = ("id", "status", "error_code", "risk", "melanoma_alert", "model_version", "received_at", "finished_at")
        assert {c: tombstone[c] for c in kept} == {c: before[name][c] for c in kept}, name
    assert job_row(path, ids["old_rejected"])["error_code"] == "too_dark", "the outcome stays"

    assert dict(job_row(path, ids["recent_done"])) == before["recent_done"], "inside retention: untouched"
    assert [r["chat_ref"] for r in rows(path, "SELECT chat_ref FROM consents")] == ["c" * 32]
    assert [r["chat_ref"] for r in rows(path, "SELECT chat_ref FROM patient_profiles")] == ["c" * 32]

    again = purge(url, "--older-than", "183")
    assert "0 jobs left as tombstones, 0 consents, 0 profiles and 0 reminders deleted" in again.stdout, "idempotent"


def test_purge_defaults_to_the_retention_setting_and_refuses_less_than_six_months(
    database: tuple[str, Path, dict[str, uuid.UUID]],
) -> None:
    url, path, ids = database
    refused = purge(url, "--older-than", "20")
    assert refused.returncode == 2 and "at least 183 days" in refused.stderr
    assert dict(job_row(path, ids["recent_done"]))["chat_ref"] == "a" * 32, "nothing was purged"

    assert Settings().retention_days >= MINIMUM_RETENTION_DAYS == 183
    with pytest.raises(ValueError, match="183"):
        Settings(retention_days=90)
    default = purge(url)
    assert default.returncode == 0 and "older than 183 days: 2 jobs" in default.stdout


def test_purge_refuses_a_missing_database(tmp_path: Path) -> None:
    result = purge(f"sqlite:///{tmp_path / 'nowhere.sqlite3'}")
    assert result.returncode == 2 and "no audit database" in result.stderr
    assert not (tmp_path / "nowhere.sqlite3").exists()


def test_the_beat_queues_the_purge_daily_for_the_workers() -> None:
    from celery.schedules import crontab

    from shared.queue import CLINICIANS_QUEUE, PURGE_TASK, TASK_ROUTES
    from worker.celery_app import app

    (entry,) = [entry for entry in app.conf.beat_schedule.values() if entry["task"] == PURGE_TASK]
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab) and len(schedule.hour) == 1 and len(schedule.minute) == 1, "once a day"
    assert TASK_ROUTES[PURGE_TASK]["queue"] == CLINICIANS_QUEUE


def test_the_workers_purge_task_purges_with_the_retention_setting(
    database: tuple[str, Path, dict[str, uuid.UUID]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, path, ids = database
    from shared.config import get_settings

    monkeypatch.setenv("SKINSENSE_DATABASE_URL", url)
    get_settings.cache_clear()  # the engine follows the settings' URL
    try:
        from worker.tasks import purge_expired_patient_data

        counts = purge_expired_patient_data()
    finally:
        get_settings.cache_clear()
    assert counts == {"jobs_tombstoned": 2, "consents_deleted": 1, "profiles_deleted": 1, "reminders_deleted": 0}
    assert job_row(path, ids["old_done"])["chat_ref"] == PURGED_CHAT_REF


def test_the_beat_queues_the_reconciler_often_and_never_lets_runs_pile_up() -> None:
    from shared.config import get_settings
    from shared.queue import CLINICIANS_QUEUE, RECONCILE_TASK, TASK_ROUTES
    from worker.celery_app import app

    entry = app.conf.beat_schedule["reconcile-jobs"]
    assert entry["task"] == RECONCILE_TASK and entry["schedule"] == get_settings().reconcile_interval_s
    assert entry["options"]["expires"] <= entry["schedule"], "a run not started before the next one is dropped"
    assert TASK_ROUTES[RECONCILE_TASK]["queue"] == CLINICIANS_QUEUE, "runs even while photos are backed up"
