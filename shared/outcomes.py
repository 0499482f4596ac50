"""Why a job ended without a result: the stable codes of the audit trail (their string values are stored
in the audit database and must never change), each with its patient text in shared/texts/."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RefusalCode(StrEnum):
    """The photo or file cannot be analysed; the patient is told why and what to send instead."""

    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"
    EMPTY = "empty"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    NOT_SKIN = "not_skin"
    NOT_A_LESION = "not_a_lesion"
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    LESION_TOO_SMALL = "lesion_too_small"
    DOWNLOAD_FAILED = "download_failed"


class FailureCode(StrEnum):
    """The analysis failed on our side; the patient is asked to send the photo again."""

    TIME_LIMIT = "time_limit"
    TELEGRAM_UNAVAILABLE = "telegram_unavailable"
    INTERNAL_ERROR = "internal_error"
    WORKER_LOST = "worker_lost"
    ENQUEUE_FAILED = "enqueue_failed"
    ERASED = "erased"  # the patient sent /delete while it was in progress: nothing analyses or answers it
    STALLED = "stalled"  # the reconciler queued it again as often as allowed (worker/reconciler.py)
    # "No thanks" from a patient who had agreed, before this photo was analysed: never analysed; the worker
    # that takes it tells the patient so.
    CONSENT_WITHDRAWN = "consent_withdrawn"


OutcomeCode = RefusalCode | FailureCode


def outcome_code(value: str) -> OutcomeCode:
    """The code a stored string stands for; ValueError for a string that is neither."""
    if value in RefusalCode.__members__.values():
        return RefusalCode(value)
    return FailureCode(value)


@dataclass(frozen=True)
class Refusal:
    """A refused photo: the stable code, and the reason in prose for the audit trail."""

    code: RefusalCode
    reason: str
