"""``skinsense audit``: list the audit rows, or export them as CSV or JSON lines, filtered by time, status and
risk; ``clinician-actions`` and ``review-times`` report what clinicians did with the alerts and how long alerts
waited (skinsense/audit_clinicians.py). Times are ISO 8601 with their offset (UTC). It never creates a
database: a SQLite file that is not there is refused (exit code 2) with one line saying so.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO

from shared.audit import Job, JobStatus
from shared.labels import RiskLevel
from shared.retention import MINIMUM_RETENTION_DAYS

EXIT_REFUSED = 2
LISTING_HEADER = (
    f"{'received_at':<25} {'job':<36} {'status':<8} {'risk':<6} {'top':<9} {'alert':<5} "
    f"{'answers_used':<15} {'clinicians':<19} error"
)


class AuditRefused(Exception):
    """The command cannot run as asked; the message is the one line the operator reads."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=["list", "purge", "clinician-actions", "review-times", "performance"],
        default="list",
        help="list (default) or export rows; purge: erase patient data past retention, keeping tombstones; "
        "clinician-actions: every press of an alert's buttons; review-times: median and 95th percentile from "
        "alert to claim and to resolution; performance: the clinic's real-world figures from the clinicians' "
        "conclusions and biopsy results (--since/--until: when the alerts were sent)",
    )
    parser.add_argument("--model-version", metavar="VERSION", help="performance: only this model version's alerts")
    parser.add_argument(
        "--per-alert", action="store_true", help="review-times: one row per alert thread instead of the summary"
    )
    parser.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help=f"purge: received (or given, updated) more than DAYS ago (default SKINSENSE_RETENTION_DAYS; "
        f"at least {MINIMUM_RETENTION_DAYS})",
    )
    parser.add_argument("--limit", type=int, default=50, help="newest N rows (default 50; 0: all)")
    parser.add_argument(
        "--since",
        type=_moment(end_of_day=False),
        metavar="WHEN",
        help="received at or after: a date (2026-05-01, from its start, UTC) or an ISO time (naive: UTC)",
    )
    parser.add_argument(
        "--until",
        type=_moment(end_of_day=True),
        metavar="WHEN",
        help="received before: an ISO time, or a date (that whole day included)",
    )
    parser.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this status")
    parser.add_argument("--risk", choices=[r.value for r in RiskLevel], help="only results of this risk")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", metavar="FILE", help="write CSV (a header row, then one row per job; '-': stdout)")
    output.add_argument("--jsonl", metavar="FILE", help="write JSON lines (one object per job; '-': stdout)")


def _moment(*, end_of_day: bool) -> Any:
    def parse(text: str) -> datetime:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a date or an ISO 8601 time: {text!r}") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        start = datetime.combine(day, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start

    return parse


def run(args: argparse.Namespace) -> int:
    if args.action == "purge":
        return _purge(args.older_than)
    try:
        if args.action in ("clinician-actions", "review-times", "performance"):
            lines = _clinician_report(args)
        else:
            jobs = list(_select_jobs(args))
            lines = None
    except AuditRefused as refusal:
        print(f"skinsense audit: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    target: str | None = args.csv or args.jsonl
    if lines is not None:
        if args.jsonl:
            print("skinsense audit: --jsonl is for the job rows; use the table or --csv", file=sys.stderr)
            return EXIT_REFUSED
    elif target is None:
        return _write_quietly(sys.stdout, _listing(jobs, _alert_states(jobs)))
    else:
        lines = _csv_lines(jobs) if args.csv else _json_lines(jobs)
    if target is None:
        return _write_quietly(sys.stdout, lines)
    if target == "-":
        return _write_quietly(sys.stdout, lines)
    with open(target, "w", newline="", encoding="utf-8") as output:
        output.writelines(lines)
    return 0


def _select_jobs(args: argparse.Namespace) -> Iterator[Job]:
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlmodel import Session, col, select

    from shared.config import get_settings
    from shared.db import get_engine

    url = get_settings().database_url
    _refuse_missing_sqlite_file(url)
    query = select(Job).order_by(col(Job.received_at).desc())
    if args.since is not None:
        query = query.where(col(Job.received_at) >= args.since)
    if args.until is not None:
        query = query.where(col(Job.received_at) < args.until)
    if args.status is not None:
        query = query.where(col(Job.status) == JobStatus(args.status))
    if args.risk is not None:
        query = query.where(col(Job.risk) == RiskLevel(args.risk))
    if args.limit > 0:
        query = query.limit(args.limit)
    try:
        with Session(get_engine(url)) as session:
            yield from session.exec(query).all()
    except (OperationalError, ProgrammingError) as error:
        raise AuditRefused(
            f"cannot read the audit table ({type(error.orig).__name__}); run `skinsense db upgrade` first?"
        ) from None


def _clinician_report(args: argparse.Namespace) -> Iterator[str]:
    """The clinician actions or the review-time report, read in full before anything is written."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.clinic.store import AlertStore
    from shared.config import get_settings
    from shared.db import get_engine
    from shared.spot_followups import reminder_figures
    from skinsense import audit_clinicians, audit_performance

    url = get_settings().database_url
    _refuse_missing_sqlite_file(url)
    store = AlertStore(get_engine(url))
    try:
        if args.action == "clinician-actions":
            actions = [a for a in store.actions(args.since) if args.until is None or a.at < args.until]
            return audit_clinicians.action_lines(actions, as_csv=bool(args.csv))
        times = store.review_times(args.since, args.until)
        if args.action == "performance":
            outcomes = store.alert_outcomes(args.since, args.until)
            reminders = reminder_figures(get_engine(url), args.since, args.until)
            lines = audit_performance.performance_lines(
                outcomes, times, model_version=args.model_version, reminders=reminders
            )
            return (f"{line}\n" for line in lines)
    except (OperationalError, ProgrammingError) as error:
        raise AuditRefused(
            f"cannot read the clinician tables ({type(error.orig).__name__}); run `skinsense db upgrade` first?"
        ) from None
    return audit_clinicians.review_time_lines(times, as_csv=bool(args.csv), per_alert=args.per_alert)


def _alert_states(jobs: list[Job]) -> dict[Any, str]:
    """Each listed job's clinician alert state (open, claimed, resolved), for the listing's clinicians column."""
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlmodel import Session, col, select

    from shared.audit import ClinicianAlert
    from shared.config import get_settings
    from shared.db import get_engine

    if not jobs:
        return {}
    try:
        with Session(get_engine(get_settings().database_url)) as session:
            rows = session.exec(
                select(ClinicianAlert.job_id, ClinicianAlert.thread_id, ClinicianAlert.state).where(
                    col(ClinicianAlert.job_id).in_([job.id for job in jobs])
                )
            ).all()
            roots = {
                alert.id: alert.state.value
                for alert in session.exec(
                    select(ClinicianAlert).where(col(ClinicianAlert.id).in_({thread for _, thread, _ in rows}))
                ).all()
            }
    except (OperationalError, ProgrammingError):
        return {}  # an older schema: the column says "-"
    return {job_id: roots.get(thread_id, str(state)) for job_id, thread_id, state in rows}


def _purge(older_than_days: int | None) -> int:
    from shared.config import get_settings
    from shared.db import get_engine
    from shared.retention import purge_patient_data

    settings = get_settings()
    days = settings.retention_days if older_than_days is None else older_than_days
    try:
        if days < MINIMUM_RETENTION_DAYS:
            raise AuditRefused(
                f"--older-than {days}: audit rows are kept at least {MINIMUM_RETENTION_DAYS} days "
                "(the EU AI Act's six months for logs of high-risk systems)"
            )
        _refuse_missing_sqlite_file(settings.database_url)
        counts = purge_patient_data(get_engine(settings.database_url), older_than_days=days)
    except AuditRefused as refusal:
        print(f"skinsense audit: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"purged patient data older than {days} days: {counts.jobs_tombstoned} jobs left as tombstones, "
        f"{counts.consents_deleted} consents, {counts.profiles_deleted} profiles and {counts.reminders_deleted} "
        "reminders deleted"
    )
    return 0


def _refuse_missing_sqlite_file(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.is_file():
        raise AuditRefused(f"no audit database at {path.resolve()} (SKINSENSE_DATABASE_URL={url}); nothing was created")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()


def _record(job: Job) -> dict[str, Any]:
    """Every column, in the table's order; times ISO 8601 with their offset."""
    values = job.model_dump(mode="json")
    return {
        name: _iso(moment) if isinstance(moment := getattr(job, name), datetime) else values[name]
        for name in Job.model_fields
    }


def _listing(jobs: Iterable[Job], alert_states: dict[Any, str]) -> Iterator[str]:
    yield LISTING_HEADER + "\n"
    for job in jobs:
        top = job.ranking[0]["code"] if job.ranking else "-"
        alert = "-" if job.melanoma_alert is None else ("yes" if job.melanoma_alert else "no")
        received = _iso(job.received_at.replace(microsecond=0))
        yield (
            f"{received:<25} {job.id} {job.status.value:<8} {job.risk or '-':<6} top={top:<5} {alert:<5} "
            f"answers_used={len(job.answers_used or []):<2} clinicians={alert_states.get(job.id, '-'):<8} "
            f"{job.error_code or ''}".rstrip()
            + "\n"
        )


def _csv_lines(jobs: Iterable[Job]) -> Iterator[str]:
    columns = list(Job.model_fields)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for cells in itertools.chain([columns], ([_cell(_record(job)[c]) for c in columns] for job in jobs)):
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _json_lines(jobs: Iterable[Job]) -> Iterator[str]:
    for job in jobs:
        yield json.dumps(_record(job), ensure_ascii=False) + "\n"


def _write_quietly(output: TextIO, lines: Iterable[str]) -> int:
    """Write to standard output; a reader that went away (``| head``) ends the command quietly."""
    try:
        for line in lines:
            output.write(line)
        output.flush()
    except BrokenPipeError:
        # Python's advice: point stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, output.fileno())
        return 1
    return 0
