"""Every refusal and failure code, and every risk level, has its patient text; the stored values are stable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.labels import RiskLevel
from shared.outcomes import FailureCode, RefusalCode, outcome_code
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts

REPO = Path(__file__).resolve().parents[2]


def test_stored_code_values_never_change() -> None:
    """They are in audit databases already: renaming one orphans those rows."""
    assert [c.value for c in RefusalCode] == [
        "too_large",
        "not_an_image",
        "unsupported_format",
        "corrupt",
        "empty",
        "too_many_pixels",
        "too_small",
        "not_skin",
        "not_a_lesion",
        "blurry",
        "too_dark",
        "too_bright",
        "lesion_too_small",
        "download_failed",
    ]
    assert [c.value for c in FailureCode] == [
        "time_limit",
        "telegram_unavailable",
        "internal_error",
        "worker_lost",
        "enqueue_failed",
        "erased",
        "stalled",
        "consent_withdrawn",
    ]


@pytest.mark.parametrize("code", list(RefusalCode))
def test_every_refusal_code_has_its_own_patient_text(code: RefusalCode) -> None:
    assert set(patient_texts.REJECTION_ADVICE) == set(RefusalCode)
    text = patient_texts.rejection(code, 10)
    assert text.startswith("Sorry, I cannot analyse this file. ") and "{" not in text


@pytest.mark.parametrize("code", list(FailureCode))
def test_every_failure_code_has_its_patient_text(code: FailureCode) -> None:
    assert set(patient_texts.FAILURE_TEXT) == set(FailureCode)
    apologies = (
        patient_texts.ANALYSIS_FAILED,
        patient_texts.ENQUEUE_FAILED,
        patient_texts.ERASED_IN_PROGRESS,
        patient_texts.STALLED,
        patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS,
    )
    assert patient_texts.failure(code) in apologies
    if code != FailureCode.ERASED:  # the patient erased it: nothing to send again
        assert "again" in patient_texts.failure(code), "every apology says what to do: send the photo again"


def test_every_risk_level_has_its_advice() -> None:
    assert set(result_texts.RISK_ADVICE) == set(RiskLevel)


def test_an_unknown_code_is_an_error_not_a_silent_fallback() -> None:
    with pytest.raises(KeyError):
        patient_texts.rejection("no_such_code", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        outcome_code("no_such_code")
    assert outcome_code("blurry") is RefusalCode.BLURRY and outcome_code("worker_lost") is FailureCode.WORKER_LOST


def test_every_code_the_image_checks_raise_is_a_refusal_code() -> None:
    """A new gate in models/ or shared/ must add its code (and so its text) here, or the worker fails the job."""
    raised: set[str] = set()
    for folder in ("models", "shared"):
        for path in (REPO / folder).rglob("*.py"):
            raised |= set(re.findall(r'UnreadableImage\(\s*"([a-z_]+)"', path.read_text()))
    assert raised, "no UnreadableImage codes found: the pattern above is out of date"
    assert raised <= {c.value for c in RefusalCode}
