"""``skinsense audit clinician-actions`` and ``review-times``: what clinicians did and how long alerts waited,
as a table and as CSV, from a real (migrated) audit database."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from shared.audit import AlertResolution, AlertState, ClinicianAction, ClinicianAlert
from tests.auxil.database import migrated_engine
from tests.auxil.services import child_env

SENT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _thread(created: datetime, claim_min: float | None, resolve_min: float | None) -> ClinicianAlert:
    alert_id = uuid.uuid4()
    return ClinicianAlert(
        id=alert_id,
        job_id=uuid.uuid4(),
        chat_ref="p" * 32,
        thread_id=alert_id,
        created_at=created,
        state=AlertState.RESOLVED if resolve_min else (AlertState.CLAIMED if claim_min else AlertState.OPEN),
        claimed_at=None if claim_min is None else created + timedelta(minutes=claim_min),
        claimed_by=None if claim_min is None else "Dr A",
        resolved_at=None if resolve_min is None else created + timedelta(minutes=resolve_min),
        resolved_by=None if resolve_min is None else "Dr B",
        resolution=None if resolve_min is None else AlertResolution.NO_ACTION,
    )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    with Session(migrated_engine(url)) as session:
        threads = [_thread(SENT, 10, 60), _thread(SENT + timedelta(hours=1), 20, 120), _thread(SENT, 30, None)]
        session.add_all(threads)
        session.add(_thread(SENT - timedelta(days=30), 1, 2))  # before --since
        session.add(
            ClinicianAction(
                alert_id=threads[0].id,
                action="claim",
                chat="9001",
                user_id=9001,
                user_name="Dr A",
                outcome="done",
                at=SENT + timedelta(minutes=10),
            )
        )
        session.add(
            ClinicianAction(alert_id=threads[0].id, action="no_action", chat="ref:abc", outcome="refused", at=SENT)
        )
        session.commit()
    return url


def audit(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "audit", *arguments],
        env=child_env(database_url=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_review_times_report_the_median_and_95th_percentile_to_claim_and_to_resolution(database_url: str) -> None:
    table = audit(database_url, "review-times", "--since", "2026-05-01").stdout.splitlines()
    assert table[0].split() == ["from", "alert", "to", "alerts", "reviewed", "waiting", "median", "p95"]
    assert table[1].split() == ["claim", "3", "3", "0", "20.0", "min", "30.0", "min"]
    assert table[2].split() == ["resolution", "3", "2", "1", "90.0", "min", "2.0", "h"]
    rows = list(
        csv.DictReader(io.StringIO(audit(database_url, "review-times", "--since", "2026-05-01", "--csv", "-").stdout))
    )
    assert [(r["step"], r["median_s"], r["p95_s"], r["waiting"]) for r in rows] == [
        ("claim", "1200", "1800", "0"),
        ("resolution", "5400", "7200", "1"),
    ]
    per_alert = list(
        csv.DictReader(io.StringIO(audit(database_url, "review-times", "--per-alert", "--csv", "-").stdout))
    )
    assert len(per_alert) == 4 and {r["resolved_by"] for r in per_alert} == {"Dr B", ""}


def test_clinician_actions_list_every_press_with_who_what_when(database_url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(audit(database_url, "clinician-actions", "--csv", "-").stdout)))
    assert [(r["action"], r["chat"], r["user_id"], r["outcome"]) for r in rows] == [
        ("no_action", "ref:abc", "", "refused"),
        ("claim", "9001", "9001", "done"),
    ]
    assert rows[1]["at"] == "2026-05-04T09:10:00+00:00"
    table = audit(database_url, "clinician-actions").stdout.splitlines()
    assert table[0].startswith("at ") and "Dr A" in table[2]
