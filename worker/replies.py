"""What the patient gets back for one job, composed from its row: the refusal or the result text (the
wording lives in shared/messages.py), and the details the result quotes that only the worker can work out
(which answers moved the risk, the measured reliability on the photo's kind)."""

from __future__ import annotations

from dataclasses import dataclass

from models.answer_effects import answer_effects
from models.inference import Classifier
from shared import messages
from shared.answers import AnswerEffect, PatientAnswers
from shared.audit import Job, JobStatus, MediaKind
from shared.labels import PhotoKind
from shared.messages import MAX_FILE_MB
from shared.outcomes import RefusalCode
from shared.results import patient_result


@dataclass(frozen=True)
class ResultDetails:
    """Stored on the job with the combined result (JobStore.mark_combined)."""

    answer_effects: dict[str, AnswerEffect]
    malignant_told_low_per_100: float


def result_details(classifier: Classifier, job: Job, kind: PhotoKind, answers: PatientAnswers | None) -> ResultDetails:
    assert job.photo_ranking is not None
    return ResultDetails(
        answer_effects=answer_effects(classifier, job.photo_ranking, kind, answers),
        # Read from the shipped artifact's evaluation, never typed into a text.
        malignant_told_low_per_100=classifier.metadata.kinds[kind].malignant_told_low_per_100,
    )


def patient_text(job: Job) -> str:
    """The refusal or the result (Telegram HTML) of a finished job."""
    if job.status == JobStatus.REJECTED:
        assert isinstance(job.error_code, RefusalCode)
        return messages.rejection(job.error_code, MAX_FILE_MB, messages.sent_name(MediaKind(job.media_kind)))
    return messages.result(patient_result(job))
