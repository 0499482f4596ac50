"""The job store: the only way bot and workers change a job, one typed transition per step of its life.

    (bot) record_received ─▶ QUEUED ─▶ RUNNING ─▶ DONE | REJECTED      record_refused ─▶ REJECTED (bot)
                              │  ▲        │ ▲
                              │  └────────┘ └─ RUNNING again: redelivered after its worker process died
                              │  (requeued for a download retry)
                              └─▶ FAILED (enqueue failed); RUNNING, DONE, REJECTED ─▶ FAILED (our side failed)

``mark_replied`` records that the patient got the final answer (once). A FAILED job whose patient was never
told may run again when its task is redelivered. Any other move raises IllegalTransition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select, update

from shared.answers import AnswerEffect, PatientAnswers
from shared.audit import Job, JobStatus, MediaKind, utc_now
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import FailureCode, Refusal

if TYPE_CHECKING:
    from shared.clinicians import NewClinicianAlert

LEGAL_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.DONE, JobStatus.REJECTED, JobStatus.FAILED}
    ),
    JobStatus.DONE: frozenset({JobStatus.FAILED}),
    JobStatus.REJECTED: frozenset({JobStatus.FAILED}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
}
FINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.REJECTED, JobStatus.FAILED})


class IllegalTransition(Exception):
    def __init__(self, job_id: uuid.UUID, current: JobStatus, wanted: JobStatus | str) -> None:
        super().__init__(f"job {job_id}: {current.value} cannot become {wanted}")


class ClassifiedPhoto(Protocol):
    """What mark_done needs of a prediction (models.inference.Prediction)."""

    @property
    def risk(self) -> RiskLevel: ...
    @property
    def melanoma_alert(self) -> bool: ...
    @property
    def model_version(self) -> str: ...
    @property
    def photo_kind(self) -> PhotoKind: ...
    def to_dict(self) -> dict[str, Any]: ...


class CombinedPrediction(ClassifiedPhoto, Protocol):
    """What mark_combined needs: a prediction that says which answers it used."""

    @property
    def answers_used(self) -> list[str]: ...


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session:
            yield session

    def _add(self, job: Job) -> Job:
        with self._session() as session:
            session.add(job)
            session.commit()
            session.refresh(job)
            return job

    @contextmanager
    def _changing(self, job_id: uuid.UUID, to: JobStatus | None = None) -> Iterator[Job]:
        """The job, to change inside the block; committed at its end. ``to``: the status it moves to."""
        with self._session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} not found")
            if to is not None:
                if to not in LEGAL_TRANSITIONS[job.status]:
                    raise IllegalTransition(job_id, job.status, to.value)
                job.status = to
            yield job
            session.add(job)
            session.commit()
            session.refresh(job)

    def load(self, job_id: uuid.UUID) -> Job | None:
        with self._session() as session:
            return session.get(Job, job_id)

    # The bot

    def record_received(
        self,
        *,
        chat_ref: str,
        media_kind: MediaKind,
        file_unique_id: str | None,
        album_id: str | None = None,
        album_position: int | None = None,
    ) -> Job:
        """A photo the bot accepted: QUEUED, about to be enqueued. An album's photos share ``album_id`` and ask
        no questions (their questionnaire is closed at once: see bot/albums.py)."""
        return self._add(
            Job(
                chat_ref=chat_ref,
                media_kind=media_kind,
                telegram_file_unique_id=file_unique_id,
                status=JobStatus.QUEUED,
                album_id=album_id,
                album_position=album_position,
                answers=None if album_id is None else PatientAnswers().model_dump(mode="json"),
                answers_closed_at=None if album_id is None else utc_now(),
            )
        )

    def record_refused(
        self, *, chat_ref: str, media_kind: MediaKind, file_unique_id: str | None, refusal: Refusal
    ) -> Job:
        """A file the bot refused from its metadata alone, without downloading it."""
        return self._add(
            Job(
                chat_ref=chat_ref,
                media_kind=media_kind,
                telegram_file_unique_id=file_unique_id,
                status=JobStatus.REJECTED,
                error_code=refusal.code,
                error_reason=refusal.reason,
                finished_at=utc_now(),
            )
        )

    def mark_enqueued(self, job_id: uuid.UUID, *, queued_at: datetime) -> Job:
        """When the job went onto the broker. Not a transition: a worker may already be running it."""
        with self._changing(job_id) as job:
            job.queued_at = queued_at
        return job

    # The worker

    def mark_running(self, job_id: uuid.UUID) -> Job:
        """A worker starts the analysis; each start counts as one delivery attempt."""
        with self._changing(job_id, JobStatus.RUNNING) as job:
            job.started_at = utc_now()
            job.delivery_attempts += 1
        return job

    def mark_requeued(self, job_id: uuid.UUID) -> Job:
        """Handed back alive (a download retry), so the attempt never counts as a lost worker."""
        with self._changing(job_id, JobStatus.QUEUED) as job:
            pass
        return job

    def mark_done(
        self,
        job_id: uuid.UUID,
        prediction: ClassifiedPhoto,
        *,
        image_sha256: str,
    ) -> Job:
        with self._changing(job_id, JobStatus.DONE) as job:
            job.image_sha256 = image_sha256
            job.finished_at = utc_now()
            job.model_version = prediction.model_version
            job.ranking = prediction.to_dict()["ranking"]
            job.photo_ranking = job.ranking  # the photo alone; ``ranking`` becomes the combined one at the end
            job.risk = prediction.risk
            job.melanoma_alert = prediction.melanoma_alert
            job.photo_kind = prediction.photo_kind
        return job

    def earlier_result(self, job: Job, image_sha256: str) -> Job | None:
        """The patient's latest answered result for the same photo (same SHA-256), other than ``job``."""
        with self._session() as session:
            statement = (
                select(Job)
                .where(
                    Job.chat_ref == job.chat_ref,
                    Job.image_sha256 == image_sha256,
                    Job.status == JobStatus.DONE,
                    col(Job.replied_at).is_not(None),
                    col(Job.photo_ranking).is_not(None),
                    Job.id != job.id,
                )
                .order_by(col(Job.received_at).desc())
            )
            return session.exec(statement).first()

    def mark_same_photo(self, job_id: uuid.UUID, earlier: Job, *, image_sha256: str) -> Job:
        """A photo the patient sent before: DONE with the earlier job's result and answers (the questionnaire is
        closed: its answers are the earlier ones), without running the model again."""
        with self._changing(job_id, JobStatus.DONE) as job:
            job.image_sha256 = image_sha256
            job.finished_at = utc_now()
            job.same_photo_as = earlier.id
            job.model_version = earlier.model_version
            job.ranking = earlier.photo_ranking
            job.photo_ranking = earlier.photo_ranking
            job.risk = earlier.risk
            job.melanoma_alert = earlier.melanoma_alert
            job.photo_kind = earlier.photo_kind
            job.answers = earlier.answers
            job.answers_closed_at = job.answers_closed_at or utc_now()
        return job

    # Albums (worker/albums.py): one reply for the photos sent together

    def album(self, album_id: str) -> list[Job]:
        """The album's photos, in the order the patient sent them."""
        with self._session() as session:
            order = (col(Job.album_position), col(Job.received_at), col(Job.id))
            statement = select(Job).where(Job.album_id == album_id).order_by(*order)
            return list(session.exec(statement).all())

    def claim_album_reply(self, album_id: str) -> list[uuid.UUID]:
        """Marks the album's unanswered photos replied, atomically, and returns their ids: of two workers that
        finish an album's last photos together, exactly one gets them (the other gets none) and replies."""
        now = utc_now()
        with self._session() as session:
            unanswered = (col(Job.album_id) == album_id) & col(Job.replied_at).is_(None)
            ids = list(session.exec(select(Job.id).where(unanswered)).all())
            claimed = session.exec(update(Job).where(unanswered, col(Job.id).in_(ids)).values(replied_at=now))
            if claimed.rowcount != len(ids):  # another worker claimed some meanwhile: it replies
                session.rollback()
                return []
            session.commit()
            return ids

    def release_album_claim(self, job_ids: list[uuid.UUID]) -> None:
        """The album's reply failed to go out: unclaim it, so that the task's retry sends it."""
        with self._session() as session:
            session.exec(update(Job).where(col(Job.id).in_(job_ids)).values(replied_at=None))
            session.commit()

    def mark_rejected(self, job_id: uuid.UUID, refusal: Refusal, *, image_sha256: str | None = None) -> Job:
        with self._changing(job_id, JobStatus.REJECTED) as job:
            job.error_code = refusal.code
            job.error_reason = refusal.reason
            job.image_sha256 = image_sha256
            job.finished_at = utc_now()
        return job

    def mark_failed(self, job_id: uuid.UUID, code: FailureCode, reason: str) -> Job:
        with self._changing(job_id, JobStatus.FAILED) as job:
            job.error_code = code
            job.error_reason = reason[:500]
            job.finished_at = utc_now()
        return job

    def mark_replied(self, job_id: uuid.UUID) -> Job:
        """The patient got the final answer (result, refusal or apology); only once."""
        with self._changing(job_id) as job:
            if job.status not in FINAL_STATUSES or job.replied_at is not None:
                raise IllegalTransition(job_id, job.status, "replied" if job.replied_at is None else "replied twice")
            job.replied_at = utc_now()
        return job

    # The questionnaire (answers meet the photo's result; see worker/flow.py)

    def record_answers(self, job_id: uuid.UUID, answers: PatientAnswers, *, close: bool) -> Job:
        """The patient's answers so far; ``close``: the questionnaire is over (answered or skipped). Answers
        that come after it closed (a timeout) change nothing: the job is returned as it is."""
        with self._changing(job_id) as job:
            if job.answers_closed_at is None and job.replied_at is None:  # replied: answered, or erased (/delete)
                job.answers = answers.model_dump(mode="json")
                if close:
                    job.answers_closed_at = utc_now()
        return job

    def close_answers(self, job_id: uuid.UUID) -> Job:
        """The questionnaire closes with what was answered (the worker's timeout); once."""
        with self._changing(job_id) as job:
            if job.answers_closed_at is None:
                job.answers_closed_at = utc_now()
        return job

    def mark_combined(
        self,
        job_id: uuid.UUID,
        prediction: CombinedPrediction,
        *,
        answer_effects: Mapping[str, AnswerEffect] | None = None,
        malignant_told_low_per_100: float | None = None,
        clinician_alert: NewClinicianAlert | None = None,
    ) -> Job:
        """The final result, photo and answers combined; the photo-only ranking stays in ``photo_ranking``.
        ``answer_effects`` and ``malignant_told_low_per_100``: what the patient reads with it (worker/replies.py).
        A high-risk result commits together with its ``clinician_alert`` outbox row (shared/clinicians.py)."""
        with self._changing(job_id) as job:
            if job.status != JobStatus.DONE or job.photo_ranking is None:
                raise IllegalTransition(job_id, job.status, "a combined result")
            job.ranking = prediction.to_dict()["ranking"]
            job.risk = prediction.risk
            job.melanoma_alert = prediction.melanoma_alert
            job.answers_used = list(prediction.answers_used)
            job.answer_effects = {name: effect.value for name, effect in (answer_effects or {}).items()}
            job.malignant_told_low_per_100 = malignant_told_low_per_100
            if clinician_alert is not None and job.risk == RiskLevel.HIGH:
                clinician_alert.add_to(object_session(job), job)  # type: ignore[arg-type]
        return job

    def mark_clinician_notified(self, job_id: uuid.UUID, chat_id: int) -> Job:
        """One clinician chat was told about this high-risk result (saved per chat, so a retry skips it)."""
        with self._changing(job_id) as job:
            if job.status != JobStatus.DONE or job.risk != RiskLevel.HIGH:
                raise IllegalTransition(job_id, job.status, "a clinician alert")
            job.clinicians_notified = {**(job.clinicians_notified or {}), str(chat_id): utc_now().isoformat()}
        return job


@lru_cache
def get_job_store() -> JobStore:
    """The process's job store, on the configured audit database."""
    from shared.db import get_engine

    return JobStore(get_engine())
