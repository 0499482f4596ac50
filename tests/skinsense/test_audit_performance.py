"""`skinsense audit performance`'s figures from alert outcomes: Wilson intervals, what counts as suspicious,
the conclusions against the model's ranking, the positive predictive value of biopsied alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from models.serving.metrics import wilson_interval
from shared.audit import ClinicalFinding, ClinicianActionKind, Referral
from shared.clinic.buttons import Press, callback_data, parse_callback
from shared.clinic.views import AlertOutcome
from shared.labels import PhotoKind
from shared.spot_followups import ReminderFigures
from skinsense.audit_performance import group_figures, performance_lines, share

MOMENT = datetime(2026, 12, 1, tzinfo=UTC)


def outcome(
    conclusion: ClinicalFinding | None,
    *,
    referral: Referral | None = None,
    biopsy: ClinicalFinding | None = None,
    ranked: tuple[str, ...] = ("mel", "nv", "bkl"),
    kind: PhotoKind = PhotoKind.CLINICAL,
    version: str = "v1",
) -> AlertOutcome:
    return AlertOutcome(
        thread_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        created_at=MOMENT,
        forwarded=True,
        photo_kind=kind,
        model_version=version,
        melanoma_alert=ranked[:1] == ("mel",),
        ranked_codes=ranked,
        resolved_at=None if conclusion is None else MOMENT,
        conclusion=conclusion,
        referral=referral,
        biopsy_result=biopsy,
    )


def test_the_wilson_interval_is_sound_for_small_counts() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(1, 1)
    assert low == pytest.approx(0.2065, abs=1e-3) and high == 1.0
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    assert share(0, 0) == "none" and share(1, 4) == "1 of 4 = 25% (5%-70%)"


def test_suspicious_ranking_agreement_and_biopsy_ppv_are_counted_over_what_was_recorded() -> None:
    outcomes = [
        outcome(ClinicalFinding.MEL, referral=Referral.BIOPSY, biopsy=ClinicalFinding.MEL),
        outcome(ClinicalFinding.NV, ranked=("mel", "nv", "bkl"), referral=Referral.BIOPSY, biopsy=ClinicalFinding.NV),
        outcome(ClinicalFinding.BKL, ranked=("mel", "bcc", "nv"), referral=Referral.NONE),
        outcome(ClinicalFinding.SCC, referral=Referral.APPOINTMENT),  # not one of the model's seven
        outcome(None),  # not resolved yet
    ]
    figures = group_figures("clinical", "v1", outcomes)
    assert (figures.alerts, figures.resolved, figures.concluded) == (5, 4, 4)
    assert figures.suspicious == 3, "melanoma, the nevus referred for a biopsy, and the SCC"
    assert figures.referred_biopsy == 2
    assert (figures.ranked, figures.first_class, figures.in_first_three) == (3, 1, 2)
    assert (figures.biopsied, figures.biopsy_malignant) == (2, 1)


def test_the_report_groups_by_photo_kind_and_model_version_and_can_keep_one_version() -> None:
    outcomes = [outcome(ClinicalFinding.MEL), outcome(ClinicalFinding.NV, kind=PhotoKind.DERMOSCOPIC, version="v2")]
    report = "\n".join(performance_lines(outcomes, []))
    assert "Photo kind clinical, model version v1:" in report and "Photo kind dermoscopic, model version v2:" in report
    assert "Photo kind all, model version all:" in report
    only = "\n".join(performance_lines(outcomes, [], model_version="v2"))
    assert "Alert threads: 1 (model version: v2)" in only and "model version v1" not in only
    assert "Sensitivity cannot be read from alerts" in report
    assert list(performance_lines([], [])) == [
        "Alert threads: 0 (model version: all)",
        "No alerts in this period: nothing to report.",
    ]


def test_outcome_presses_carry_their_choice_and_forged_choices_are_refused() -> None:
    thread = uuid.uuid4()
    conclude = callback_data(ClinicianActionKind.CONCLUDE, thread, ClinicalFinding.BCC.value)
    assert len(conclude.encode()) <= 64, "Telegram's limit on callback data"
    assert parse_callback(conclude) == Press(ClinicianActionKind.CONCLUDE, thread, ClinicalFinding.BCC)
    refer = callback_data(ClinicianActionKind.REFER, thread, Referral.APPOINTMENT.value)
    assert len(refer.encode()) <= 64 and parse_callback(refer) == Press(
        ClinicianActionKind.REFER, thread, Referral.APPOINTMENT
    )
    for forged in (
        f"clin|conclude|{thread}",
        f"clin|conclude|{thread}|cancer",
        f"clin|refer|{thread}|mel",
        f"clin|claim|{thread}|mel",
    ):
        assert parse_callback(forged) is None, forged
    assert parse_callback(f"clin|claim|{thread}") == Press(ClinicianActionKind.CLAIM, thread)


def test_the_report_says_what_the_reminders_brought() -> None:
    figures = ReminderFigures(
        asked=4, sent=3, new_photos=2, changed=1, no_clear_change=0, not_comparable=1, changes={"darker": 1}
    )
    lines = list(performance_lines([], [], reminders=figures))
    assert lines[:2] == [
        "Reminders to photograph a spot again: 4 asked for, 3 sent; new photos sent in reply: 2",
        "  compared: a change 1 (darker 1), no clear change 0; not comparable 1",
    ]
