"""A patient's results as stored on their job rows, read back for the reply and for /history."""

from __future__ import annotations

from shared.audit import Job
from shared.labels import PhotoKind, RiskLevel
from shared.texts import result as result_texts


def patient_result(job: Job) -> result_texts.PatientResult:
    """The result a DONE job's row holds, as the patient reads it."""
    assert job.ranking is not None and job.risk is not None
    return result_texts.PatientResult(
        ranking=job.ranking,
        risk=RiskLevel(job.risk),
        melanoma_alert=bool(job.melanoma_alert),
        photo_kind=None if job.photo_kind is None else PhotoKind(job.photo_kind),
        malignant_told_low_per_100=job.malignant_told_low_per_100,
        answers_used=tuple(job.answers_used or ()),
        answer_effects=dict(job.answer_effects or {}),
        answers=job.answers,
        photo_ranking=job.photo_ranking,
    )
