"""``skinsense audit``: header, times with their offset, filters, CSV and JSON lines, a closed pipe, and a
missing database refused rather than created."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from shared.audit import Job, JobStatus, MediaKind
from shared.labels import RiskLevel
from shared.outcomes import RefusalCode
from skinsense.audit_cli import EXIT_REFUSED, LISTING_HEADER
from tests.auxil.database import migrated_engine
from tests.auxil.services import child_env

HIGH_AT = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
REJECTED_AT = datetime(2026, 5, 2, 23, 30, tzinfo=UTC)
LOW_AT = datetime(2026, 5, 3, 8, 0, tzinfo=UTC)


def _job(received_at: datetime, status: JobStatus, risk: RiskLevel | None = None, **fields: Any) -> Job:
    return Job(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, status=status, risk=risk, received_at=received_at, **fields
    )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    with Session(migrated_engine(url)) as session:
        session.add(_job(HIGH_AT, JobStatus.DONE, RiskLevel.HIGH, melanoma_alert=True, ranking=[{"code": "mel"}]))
        session.add(_job(REJECTED_AT, JobStatus.REJECTED, error_code=RefusalCode.NOT_AN_IMAGE))
        session.add(_job(LOW_AT, JobStatus.DONE, RiskLevel.LOW, melanoma_alert=False, ranking=[{"code": "nv"}]))
        session.commit()
    return url


def audit(database_url: str, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "audit", *arguments],
        env=child_env(database_url=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_listing_has_a_header_and_times_with_their_offset(database_url: str) -> None:
    lines = audit(database_url).stdout.splitlines()
    assert lines[0] == LISTING_HEADER
    assert [line.split()[0] for line in lines[1:]] == [
        "2026-05-03T08:00:00+00:00",
        "2026-05-02T23:30:00+00:00",
        "2026-05-01T10:00:00+00:00",
    ], "newest first, ISO 8601 with the offset"
    rejected = lines[2]
    assert "rejected" in rejected and "not_an_image" in rejected and "None" not in rejected
    assert " yes " in lines[3] and "top=mel" in lines[3]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--since", "2026-05-02"], {REJECTED_AT, LOW_AT}),
        (["--until", "2026-05-02"], {HIGH_AT, REJECTED_AT}),  # a date: that whole day included
        (["--since", "2026-05-02T23:31:00+00:00"], {LOW_AT}),
        # An offset is honoured (09:30+01:30 is 08:00 UTC): SQLite once compared the local clock time instead.
        (["--since", "2026-05-03T09:30:00+01:30", "--until", "2026-05-03T08:00:01"], {LOW_AT}),
        (["--since", "2026-05-03T09:30:01+01:30"], set()),
        (["--until", "2026-05-02T23:30:00"], {HIGH_AT}),  # naive: UTC; --until is exclusive
        (["--status", "rejected"], {REJECTED_AT}),
        (["--status", "done", "--risk", "low"], {LOW_AT}),
        (["--risk", "high", "--since", "2026-05-01", "--until", "2026-05-01"], {HIGH_AT}),
    ],
)
def test_filters_by_time_status_and_risk(database_url: str, arguments: list[str], expected: set[datetime]) -> None:
    completed = audit(database_url, "--jsonl", "-", *arguments)
    assert completed.returncode == 0, completed.stderr
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    assert {datetime.fromisoformat(row["received_at"]) for row in rows} == expected


def test_unknown_status_or_bad_time_is_a_usage_error(database_url: str) -> None:
    assert audit(database_url, "--status", "lost").returncode == 2
    bad = audit(database_url, "--since", "yesterday")
    assert bad.returncode == 2 and "not a date or an ISO 8601 time" in bad.stderr


def test_csv_and_json_lines_carry_every_column_and_times_with_offset(database_url: str, tmp_path: Path) -> None:
    exported = audit(database_url, "--csv", "-").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert list(rows[0]) == list(Job.model_fields), "a header row with every column"
    assert [row["received_at"] for row in rows] == [t.isoformat() for t in (LOW_AT, REJECTED_AT, HIGH_AT)]
    assert rows[0]["melanoma_alert"] == "False" and json.loads(rows[2]["ranking"]) == [{"code": "mel"}]
    target = tmp_path / "audit.jsonl"
    assert audit(database_url, "--jsonl", str(target)).returncode == 0
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert list(records[0]) == list(Job.model_fields), "every column, in the table's order"
    assert [r["status"] for r in records] == ["done", "rejected", "done"]
    assert records[1]["risk"] is None and records[1]["error_code"] == "not_an_image"
    assert datetime.fromisoformat(records[0]["received_at"]).utcoffset() == timedelta(0)


def test_csv_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.sqlite3'}"
    with Session(migrated_engine(url)) as session:  # far more than a pipe's buffer holds
        session.add_all(
            _job(HIGH_AT + timedelta(seconds=i), JobStatus.DONE, RiskLevel.LOW, ranking=[{"code": "nv"}] * 7)
            for i in range(3000)
        )
        session.commit()
    completed = subprocess.run(
        f"{sys.executable} -m skinsense.cli audit --limit 0 --csv - | head -1",
        shell=True,
        env=child_env(database_url=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.stdout.startswith("id,chat_ref,")
    assert completed.stderr == "", "no BrokenPipeError traceback"


def test_missing_database_is_refused_not_created(tmp_path: Path) -> None:
    completed = audit("sqlite:///elsewhere.sqlite3", cwd=tmp_path)
    assert completed.returncode == EXIT_REFUSED
    assert completed.stdout == ""
    assert len(completed.stderr.splitlines()) == 1
    assert "no audit database at" in completed.stderr and str(tmp_path / "elsewhere.sqlite3") in completed.stderr
    assert not (tmp_path / "elsewhere.sqlite3").exists(), "nothing was created"


def test_database_without_the_audit_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite3").touch()
    completed = audit(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert completed.returncode == EXIT_REFUSED
    assert len(completed.stderr.splitlines()) == 1 and "skinsense db upgrade" in completed.stderr
