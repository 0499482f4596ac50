"""What a clinician reads: an alert's view, its thread and earlier results, /pending's cases, review times and
their statistics, and the pseudonymous names of patients and cases."""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.answers import PatientAnswers
from shared.audit import (
    AlertDeliveryKind,
    AlertResolution,
    AlertState,
    ClinicalFinding,
    ClinicianAlert,
    Referral,
)
from shared.labels import PhotoKind, RiskLevel

# /case_<prefix>: the start of a job id (hex, no dashes) names its alert; a bot command is at most 32 characters.
CASE_COMMAND = "case"


CASE_REF_LENGTHS = (8, 12, 16, 20, 24, 27)


MIN_CASE_REF = 6


def patient_reference(chat_ref: str) -> str:
    """What clinicians call a patient: short, stable, pseudonymous (the start of the chat's keyed hash)."""
    return f"P-{chat_ref[:8]}"


@dataclass(frozen=True)
class EarlierResult:
    received_at: datetime
    risk: RiskLevel | None


@dataclass(frozen=True)
class ThreadPhoto:
    job_id: uuid.UUID
    risk: RiskLevel | None
    forwarded: bool


@dataclass(frozen=True)
class AlertView:
    """One alert with all a clinician reads about it: the result, the patient's answers and history, and the
    state of its thread (held by the thread's root)."""

    alert_id: uuid.UUID
    thread_id: uuid.UUID
    job_id: uuid.UUID
    patient_ref: str
    created_at: datetime
    ranking: list[dict[str, Any]]
    risk: RiskLevel
    melanoma_alert: bool
    photo_kind: PhotoKind | None
    answers: PatientAnswers
    model_version: str
    earlier_results: list[EarlierResult]
    thread_photos: list[ThreadPhoto]  # the thread's photos, oldest first (this one included)
    state: AlertState
    claimed_by: str | None
    claimed_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: AlertResolution | None
    reminded_at: datetime | None
    escalated_at: datetime | None
    photo_asked_by: str | None = None  # AlertState.AWAITING_PHOTO: who asked the patient for a better photo, when
    photo_asked_at: datetime | None = None
    patient_told_at: datetime | None = None  # a clinician's message reached the patient
    conclusion: ClinicalFinding | None = None  # closing the loop: what the resolving clinician concluded
    concluded_by: str | None = None
    referral: Referral | None = None
    biopsy_result: ClinicalFinding | None = None

    @property
    def is_root(self) -> bool:
        return self.alert_id == self.thread_id


@dataclass(frozen=True)
class Attempt:
    """A delivery this process now owns (recorded before any Telegram call)."""

    alert_id: uuid.UUID
    chat_id: int
    kind: AlertDeliveryKind
    possibly_repeated: bool  # an earlier attempt's outcome is unknown: say so in what is sent
    photo_message_id: int | None  # the photo part already went out (only the text is left)
    attempts: int  # this one included: those Telegram refused, or a worker process died in


@dataclass(frozen=True)
class Decision:
    """The outcome of a press: whether it changed the alert, and the alert as it is now."""

    changed: bool
    alert: ClinicianAlert


@dataclass(frozen=True)
class PendingCase:
    """One unresolved thread as /pending lists it."""

    alert: ClinicianAlert  # the thread's root
    case_ref: str  # the shortest unique start of its job id: /case_<case_ref>
    risk: RiskLevel | None
    ranking: list[dict[str, Any]] | None
    melanoma_alert: bool


@dataclass(frozen=True)
class AlertOutcome:
    """One alert thread's root as the clinic's figures read it (skinsense audit performance): the model's side
    (photo kind, model version, ranking: empty once erased) and the clinicians' (conclusion, referral, biopsy)."""

    thread_id: uuid.UUID
    job_id: uuid.UUID
    created_at: datetime
    forwarded: bool
    photo_kind: PhotoKind | None
    model_version: str
    melanoma_alert: bool
    ranked_codes: tuple[str, ...]  # the model's classes, most probable first
    resolved_at: datetime | None
    conclusion: ClinicalFinding | None
    referral: Referral | None
    biopsy_result: ClinicalFinding | None


@dataclass(frozen=True)
class ReviewTime:
    thread_id: uuid.UUID
    job_id: uuid.UUID
    created_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None
    resolution: AlertResolution | None
    claimed_by: str | None
    resolved_by: str | None

    @property
    def to_claim_s(self) -> float | None:
        return None if self.claimed_at is None else (self.claimed_at - self.created_at).total_seconds()

    @property
    def to_resolution_s(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.created_at).total_seconds()


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


REFUSED_IN_PATIENT_CHAT = "ref:"  # clinician_actions.chat of a press refused in a patient's chat: its reference


NO_CONSENT_REF = "none"  # ... or, for a chat that never consented, no reference at all


def patient_chat_label(chat_ref: str) -> str:
    """How ``clinician_actions`` names a patient's chat (a press refused there): by its reference only."""
    return f"{REFUSED_IN_PATIENT_CHAT}{chat_ref}"


def case_ref_digits(ref: str) -> str | None:
    """A job id as /case takes it (whole, or its first hex digits; dashes and case aside): its digits, or None
    when it is not one (too short to name an alert, or not hex)."""
    digits = ref.strip().replace("-", "").lower()
    if not MIN_CASE_REF <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return digits
