"""The audit trail: one row per job, holding what an auditor needs and nothing more.

No photo, no raw chat id and no message text is stored: the chat is a keyed hash (HMAC-SHA256 with
SKINSENSE_CHAT_HASH_KEY), the photo is its SHA-256 and Telegram's file_unique_id.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, String, TypeDecorator
from sqlmodel import Field, SQLModel

from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import OutcomeCode, outcome_code


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"


class MediaKind(StrEnum):
    PHOTO = "photo"
    DOCUMENT = "document"


def chat_reference(chat_id: int, key: str) -> str:
    """Pseudonymous, stable reference to a chat: the same chat always maps to the same value."""
    return hmac.new(key.encode(), str(chat_id).encode(), hashlib.sha256).hexdigest()[:32]


class StoredEnum(TypeDecorator[StrEnum]):
    """A StrEnum stored as its plain string value (VARCHAR), read back as the enum member."""

    impl = String
    cache_ok = True

    def __init__(self, parse: Callable[[str], StrEnum], length: int) -> None:
        super().__init__(length)
        self._parse = parse

    def process_bind_param(self, value: StrEnum | None, dialect: Dialect) -> str | None:
        return None if value is None else self._parse(str(value)).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self._parse(value)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kwargs))


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chat_ref: str = Field(index=True, max_length=64)
    media_kind: MediaKind
    telegram_file_unique_id: str | None = Field(default=None, max_length=128)
    image_sha256: str | None = Field(default=None, max_length=64)
    status: JobStatus = Field(index=True)
    error_code: OutcomeCode | None = Field(default=None, sa_column=Column(StoredEnum(outcome_code, 64)))
    error_reason: str | None = Field(default=None, max_length=500)
    model_version: str | None = Field(default=None, max_length=64)
    ranking: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    risk: RiskLevel | None = Field(default=None, sa_column=Column(StoredEnum(RiskLevel, 16)))
    melanoma_alert: bool | None = None
    photo_kind: PhotoKind | None = Field(default=None, sa_column=Column(StoredEnum(PhotoKind, 16)))  # model's view
    delivery_attempts: int = 0
    received_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    queued_at: datetime | None = _timestamp()
    started_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    replied_at: datetime | None = _timestamp()
    # {clinician chat id (staff, configured by the clinic): ISO time notified}
    clinicians_notified: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    # The questionnaire (health data, under the patient's consent; erased by /delete): the answers as
    # shared.answers.PatientAnswers fields (None: unknown), when the questionnaire closed (answered, skipped or
    # timed out), the photo-only ranking (``ranking`` is then the final one, photo and answers combined) and
    # which answers the final result used.
    answers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    answers_closed_at: datetime | None = _timestamp()
    photo_ranking: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    answers_used: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # What the patient read with the result, so /history shows it again as it was: which answers raised or
    # lowered the risk ({answer: shared.answers.AnswerEffect}; health data, erased with the answers), and the
    # measured reliability quoted for this photo kind (the artifact's malignant_told_low_per_100).
    answer_effects: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    malignant_told_low_per_100: float | None = None


class ConsentDecision(StrEnum):
    AGREED = "agreed"


class Consent(SQLModel, table=True):
    """A patient's explicit consent (GDPR Art. 9) to one version of the privacy text. A refusal stores nothing:
    no row is the proof that nothing was analysed."""

    __tablename__ = "consents"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chat_ref: str = Field(index=True, max_length=64)
    text_version: str = Field(max_length=32)
    decision: ConsentDecision = Field(sa_column=Column(StoredEnum(ConsentDecision, 16), nullable=False))
    decided_at: datetime = Field(default_factory=utc_now, sa_column=Column(DateTime(timezone=True), nullable=False))


class PatientProfile(SQLModel, table=True):
    """What the patient told us about themselves, remembered for their next photo (they can change it)."""

    __tablename__ = "patient_profiles"

    chat_ref: str = Field(primary_key=True, max_length=64)
    age_range: str | None = Field(default=None, max_length=8)  # shared.questionnaire.AgeRange
    sex: str | None = Field(default=None, max_length=8)  # shared.answers.Sex
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(DateTime(timezone=True), nullable=False))
