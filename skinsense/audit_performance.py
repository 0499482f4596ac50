"""``skinsense audit performance``: how SkinSense performs on the patients it serves, from what the clinicians
recorded when they resolved its alerts (their conclusion and referral) and the biopsy results they typed later.

Per photo kind and model version: the alerts, how many were resolved and concluded, how many the clinicians
found suspicious (cancer or pre-cancer concluded, or referred for a biopsy), how often their conclusion was the
model's first class or among its first three; where biopsies came back, the share of alerts they confirmed as
cancer or pre-cancer (the positive predictive value of an alert). Proportions carry a 95 % Wilson interval:
the counts of one clinic are small. First, the patients' side: how many reminders to photograph a spot again
were asked for and sent, how many brought a new photo, and what the comparison found.

What these figures cannot say: SkinSense's sensitivity. Only alerts (HIGH results) reach the clinicians; a
cancer told LOW or MEDIUM is never concluded or biopsied here, so the misses are invisible to this report. The
model card's held-out figures are the only estimate of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from models.serving.metrics import wilson_interval
from shared.audit import MALIGNANT_FINDINGS, ClinicalFinding, Referral
from shared.clinic.views import AlertOutcome, ReviewTime
from shared.labels import CLASS_CODES
from shared.spot_followups import ReminderFigures


def share(successes: int, total: int) -> str:
    """``3 of 8 = 38 % (14-69 %)``; ``none`` when there is nothing to count."""
    if total == 0:
        return "none"
    low, high = wilson_interval(successes, total)
    return f"{successes} of {total} = {successes / total:.0%} ({low:.0%}-{high:.0%})"


def is_suspicious(outcome: AlertOutcome) -> bool:
    """The clinician confirmed the alert as suspicious: cancer or pre-cancer concluded, or referred for a biopsy."""
    return outcome.conclusion in MALIGNANT_FINDINGS or outcome.referral == Referral.BIOPSY


@dataclass(frozen=True)
class GroupFigures:
    photo_kind: str
    model_version: str
    alerts: int
    resolved: int
    concluded: int
    suspicious: int
    referred_biopsy: int
    ranked: int  # concluded as one of the model's seven types (where its ranking is still stored)
    first_class: int
    in_first_three: int
    biopsied: int
    biopsy_malignant: int


def group_figures(photo_kind: str, model_version: str, outcomes: Sequence[AlertOutcome]) -> GroupFigures:
    concluded = [o for o in outcomes if o.conclusion is not None]
    ranked = [o for o in concluded if o.ranked_codes and str(o.conclusion) in CLASS_CODES]
    biopsied = [o for o in outcomes if o.biopsy_result is not None]
    return GroupFigures(
        photo_kind=photo_kind,
        model_version=model_version,
        alerts=len(outcomes),
        resolved=sum(1 for o in outcomes if o.resolved_at is not None),
        concluded=len(concluded),
        suspicious=sum(1 for o in concluded if is_suspicious(o)),
        referred_biopsy=sum(1 for o in outcomes if o.referral == Referral.BIOPSY),
        ranked=len(ranked),
        first_class=sum(1 for o in ranked if o.ranked_codes[0] == o.conclusion),
        in_first_three=sum(1 for o in ranked if o.conclusion in o.ranked_codes[:3]),
        biopsied=len(biopsied),
        biopsy_malignant=sum(1 for o in biopsied if o.biopsy_result in MALIGNANT_FINDINGS),
    )


def performance_lines(
    outcomes: Sequence[AlertOutcome],
    times: Sequence[ReviewTime],
    *,
    model_version: str | None = None,
    reminders: ReminderFigures | None = None,
) -> Iterator[str]:
    """The report, line by line (see the module); ``reminders``: what the patients' reminders brought."""
    if model_version is not None:
        outcomes = [o for o in outcomes if o.model_version == model_version]
        kept = {o.thread_id for o in outcomes}
        times = [t for t in times if t.thread_id in kept]
    yield from _reminder_lines(reminders)
    yield f"Alert threads: {len(outcomes)} (model version: {model_version or 'all'})"
    if not outcomes:
        yield "No alerts in this period: nothing to report."
        return
    groups: dict[tuple[str, str], list[AlertOutcome]] = {}
    for outcome in outcomes:
        kind = outcome.photo_kind.value if outcome.photo_kind is not None else "unknown"
        groups.setdefault((kind, outcome.model_version), []).append(outcome)
    figures = [group_figures(kind, version, rows) for (kind, version), rows in sorted(groups.items())]
    if len(figures) > 1:
        figures.append(group_figures("all", "all", outcomes))
    for group in figures:
        yield ""
        yield f"Photo kind {group.photo_kind}, model version {group.model_version}:"
        yield f"  alerts {group.alerts}, resolved {group.resolved}, with a clinician's conclusion {group.concluded}"
        suspicious = share(group.suspicious, group.concluded)
        yield f"  confirmed suspicious (cancer or pre-cancer concluded, or biopsy): {suspicious}"
        yield f"  referred for a biopsy: {share(group.referred_biopsy, group.alerts)}"
        yield f"  conclusion was the model's first class: {share(group.first_class, group.ranked)}"
        yield f"  conclusion among the model's first three: {share(group.in_first_three, group.ranked)}"
        yield f"  biopsy found cancer or pre-cancer (PPV of an alert): {share(group.biopsy_malignant, group.biopsied)}"
    yield ""
    yield from _conclusion_table(outcomes)
    yield ""
    yield from _time_lines(times)
    yield ""
    yield (
        "Sensitivity cannot be read from alerts: cancers told LOW or MEDIUM never reach the clinicians here. "
        "See the model card's held-out figures."
    )


def _reminder_lines(figures: ReminderFigures | None) -> Iterator[str]:
    if figures is None:
        return
    changes = ", ".join(f"{kind} {count}" for kind, count in sorted(figures.changes.items())) or "none"
    yield (
        f"Reminders to photograph a spot again: {figures.asked} asked for, {figures.sent} sent; "
        f"new photos sent in reply: {figures.new_photos}"
    )
    yield (
        f"  compared: a change {figures.changed} ({changes}), no clear change {figures.no_clear_change}; "
        f"not comparable {figures.not_comparable}"
    )
    yield ""


def _conclusion_table(outcomes: Iterable[AlertOutcome]) -> Iterator[str]:
    """How the clinicians' conclusions compare with the model's first class (rows: the model; columns: them)."""
    columns = [finding.value for finding in ClinicalFinding]
    counts: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        if outcome.conclusion is None or not outcome.ranked_codes:
            continue
        row = counts.setdefault(outcome.ranked_codes[0], dict.fromkeys(columns, 0))
        row[outcome.conclusion.value] += 1
    yield "Model's first class (rows) against the clinician's conclusion (columns):"
    if not counts:
        yield "  no conclusions recorded yet"
        return
    yield "  " + f"{'model':<7}" + "".join(f"{column:>12}" for column in columns)
    for code in sorted(counts):
        yield "  " + f"{code:<7}" + "".join(f"{counts[code][column]:>12}" for column in columns)


def _time_lines(times: Sequence[ReviewTime]) -> Iterator[str]:
    for label, values in (
        ("claim", [t.to_claim_s for t in times if t.to_claim_s is not None]),
        ("resolution", [t.to_resolution_s for t in times if t.to_resolution_s is not None]),
    ):
        if not values:
            yield f"Time to {label}: none yet"
            continue
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        yield (
            f"Time to {label}: median {statistics.median(ordered) / 3600:.1f} h, 95th percentile {p95 / 3600:.1f} h "
            f"({len(ordered)} threads)"
        )
