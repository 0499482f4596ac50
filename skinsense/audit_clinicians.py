"""``skinsense audit clinician-actions`` and ``skinsense audit review-times``: what clinicians did with the alerts
(every press, refused ones included) and how long alerts waited, as a table or CSV.

The review-time report gives, over the alert threads created in the chosen period, the median and the 95th
percentile (nearest rank) from alert to claim ("I'll review", or the resolution if nobody claimed first) and from
alert to resolution; threads still waiting count in how many are open, not in the times.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from shared.audit import ClinicianAction
from shared.clinic.views import ReviewTime, median, percentile

ACTIONS_COLUMNS = ("at", "alert_id", "action", "chat", "user_id", "user_name", "outcome", "detail")
REVIEW_COLUMNS = ("step", "alerts", "reviewed", "waiting", "median_s", "p95_s")
PER_ALERT_COLUMNS = (
    "created_at",
    "job_id",
    "claimed_at",
    "to_claim_s",
    "resolved_at",
    "to_resolution_s",
    "resolution",
    "claimed_by",
    "resolved_by",
)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.replace(microsecond=0).isoformat()


def _csv(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def action_lines(actions: Iterable[ClinicianAction], *, as_csv: bool) -> Iterator[str]:
    rows = (
        (_iso(a.at), a.alert_id or "", a.action, a.chat, a.user_id or "", a.user_name or "", a.outcome, a.detail or "")
        for a in actions
    )
    if as_csv:
        yield from _csv([ACTIONS_COLUMNS, *rows])
        return
    yield f"{'at':<25} {'alert':<36} {'action':<12} {'chat':<16} {'user':<12} {'outcome':<16} {'detail':<12} name\n"
    for at, alert_id, action, chat, user_id, user_name, outcome, detail in rows:
        line = (
            f"{at:<25} {alert_id!s:<36} {action:<12} {chat[:16]:<16} {user_id!s:<12} {outcome:<16} {detail:<12} "
            f"{user_name}"
        )
        yield line.rstrip() + "\n"


def review_summary(times: Sequence[ReviewTime]) -> list[tuple[str, int, int, int, float | None, float | None]]:
    """Per step (claim, resolution): alerts, reviewed, still waiting, median and 95th percentile in seconds."""
    summary = []
    for step, values in (
        ("claim", [t.to_claim_s for t in times if t.to_claim_s is not None]),
        ("resolution", [t.to_resolution_s for t in times if t.to_resolution_s is not None]),
    ):
        summary.append(
            (step, len(times), len(values), len(times) - len(values), median(values), percentile(values, 0.95))
        )
    return summary


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    minutes = value / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def review_time_lines(times: Sequence[ReviewTime], *, as_csv: bool, per_alert: bool) -> Iterator[str]:
    if per_alert:
        rows = [
            (
                _iso(t.created_at),
                t.job_id,
                _iso(t.claimed_at),
                _seconds(t.to_claim_s),
                _iso(t.resolved_at),
                _seconds(t.to_resolution_s),
                t.resolution or "",
                t.claimed_by or "",
                t.resolved_by or "",
            )
            for t in times
        ]
        if as_csv:
            yield from _csv([PER_ALERT_COLUMNS, *rows])
            return
        yield f"{'created_at':<25} {'job':<36} {'to_claim':>10} {'to_resolution':>13} resolution\n"
        for t in times:
            line = (
                f"{_iso(t.created_at):<25} {t.job_id!s:<36} {_duration(t.to_claim_s):>10} "
                f"{_duration(t.to_resolution_s):>13} {t.resolution or 'waiting'}"
            )
            yield line + "\n"
        return
    summary = review_summary(times)
    if as_csv:
        yield from _csv([REVIEW_COLUMNS, *((s, n, r, w, _seconds(m), _seconds(p)) for s, n, r, w, m, p in summary)])
        return
    yield f"{'from alert to':<14} {'alerts':>6} {'reviewed':>8} {'waiting':>7} {'median':>10} {'p95':>10}\n"
    for step, alerts, reviewed, waiting, middle, p95 in summary:
        yield f"{step:<14} {alerts:>6} {reviewed:>8} {waiting:>7} {_duration(middle):>10} {_duration(p95):>10}\n"
