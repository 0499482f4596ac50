"""The job store: the only way bot and workers change a job, one typed transition per step of its life.

    (bot) record_received ─▶ QUEUED ─▶ RUNNING ─▶ DONE | REJECTED      record_refused ─▶ REJECTED (bot)
                              │  ▲        │ ▲
                              │  └────────┘ └─ RUNNING again: redelivered after its worker process died
                              │  (requeued for a download retry)
                              └─▶ FAILED (enqueue failed); RUNNING, DONE, REJECTED ─▶ FAILED (our side failed)

``mark_replied`` records that the patient got the final answer (once). A FAILED job whose patient was never
told may run again when its task is redelivered. Any other move raises IllegalTransition.

The row is also the source of truth for delivery: ``Delivery`` (chat id, the "Analysing..." message, Telegram's
file id) is stored sealed (shared/sealing.py) from intake until the patient is answered, then erased; the
broker carries job ids only. Every step sets ``due_at``, when the next step is overdue; the reconciler
(worker/reconciler.py) claims overdue jobs with conditional UPDATEs (``claim_overdue``, ``claim_slow_notice``),
so two reconcilers never act twice on one job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select, update

from shared.answers import AnswerEffect, PatientAnswers
from shared.audit import Consent, Job, JobStatus, MediaKind, utc_now
from shared.config import Settings, get_settings
from shared.db import lock_for_writing
from shared.labels import PhotoKind, RiskLevel, forwarded
from shared.outcomes import FailureCode, Refusal
from shared.sealing import SealBroken, Sealer, get_sealer

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from shared.clinic.store import NewClinicianAlert

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
# Not answered and not analysed yet: a patient waiting on these is told, once, that it takes longer.
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
# Closed by the patient before the analysis (/delete, "No thanks"): never analysed, whatever is still queued.
NEVER_ANALYSED = frozenset({FailureCode.ERASED, FailureCode.CONSENT_WITHDRAWN})
# A job's message is published shortly after its deadline is set (the publisher may retry for a few seconds):
# a job is known to have left the queue only when it was queued this much before the oldest message waiting.
PUBLISH_LAG = timedelta(seconds=5)


class Delivery(BaseModel):
    """What is needed to answer the patient: stored sealed on the job row until the answer is delivered."""

    chat_id: int
    file_id: str
    status_message_id: int | None = None  # the "Analysing..." message; None until the bot has sent it
    # The questionnaire's message: the worker closes it when the photo needs no answers after all (refused, the
    # same photo again) or nobody answered in time (worker/flow.py); the patient's own close is the bot's.
    questionnaire_message_id: int | None = None
    photo_message_id: int | None = None  # the patient's photo: an answer sent as a new message replies to it
    # A new photo of a spot photographed before (sent in reply to a reminder): the earlier photo's Telegram file
    # id, for the comparison (shared/spot_followups.py); erased with the rest once the patient is answered.
    earlier_file_id: str | None = None


def asks_no_questions(job: Job) -> bool:
    """A photo whose answer needs no questionnaire (any more): refused, failed, the same photo sent before, or
    already answered or closed."""
    return (
        job.status in (JobStatus.REJECTED, JobStatus.FAILED)
        or job.same_photo_as is not None
        or job.replied_at is not None
        or job.answers_closed_at is not None
    )


@dataclass(frozen=True)
class Deadlines:
    """How long each step may take before the job is overdue (the reconciler then queues it again)."""

    queued_s: float = 30.0  # queued (or its answer pending) and not started
    running_s: float = 50.0  # running: past the task's hard time limit its worker is dead
    questionnaire_s: float = 120.0  # analysed, waiting for the questionnaire (then finalized anyway)
    backlog_s: float = 180.0  # queued, its message still waiting behind others: this much longer

    @classmethod
    def from_settings(cls, settings: Settings) -> Deadlines:
        return cls(
            settings.queued_deadline_s,
            settings.running_deadline_s,
            settings.questionnaire_timeout_s,
            settings.backlog_deadline_s,
        )


@dataclass(frozen=True)
class OverdueJob:
    """A job the reconciler claimed: ``tries`` counts the reconciler's claims, this one included."""

    id: uuid.UUID
    status: JobStatus
    tries: int


class IllegalTransition(Exception):
    def __init__(self, job_id: uuid.UUID, current: JobStatus, wanted: JobStatus | str) -> None:
        super().__init__(f"job {job_id}: {current.value} cannot become {wanted}")


class ClassifiedPhoto(Protocol):
    """What mark_done needs of a prediction (models.serving.inference.Prediction)."""

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
    @property
    def answer_effects(self) -> Mapping[str, AnswerEffect]: ...
    @property
    def raised_by_change(self) -> bool: ...
    @property
    def raised_by_skin_tone(self) -> bool: ...


class JobStore:
    def __init__(self, engine: Engine, *, sealer: Sealer | None = None, deadlines: Deadlines | None = None) -> None:
        self._engine = engine
        self._sealer = sealer or get_sealer()
        self.deadlines = deadlines or Deadlines.from_settings(get_settings())

    def _due(self, seconds: float) -> datetime:
        return utc_now() + timedelta(seconds=seconds)

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
            # Locked until the commit: a concurrent /delete (or "No thanks") waits for this change and then erases
            # (or closes) it, or this change sees that; never a result written back onto an erased or closed row.
            lock_for_writing(session)
            job = session.get(Job, job_id, with_for_update=True)
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

    # Delivery data, sealed

    def delivery_of(self, job: Job) -> Delivery | None:
        """The job's delivery data; None once erased (answered), for rows from before, or if it cannot be
        opened (a key dropped too early: logged)."""
        if job.delivery is None:
            return None
        try:
            return self._sealer.unseal(job.delivery, Delivery)
        except SealBroken:
            log.error("job %s: its delivery data cannot be unsealed with SKINSENSE_DELIVERY_KEY", job.id)
            return None

    def unanswered_status_messages(self, chat_ref: str) -> list[int]:
        """The "Analysing..." messages of a patient's jobs still waiting for their answer (an album's once):
        what /delete turns into "no result for this photo" before it erases the rows that hold them."""
        with self._session() as session:
            waiting = select(Job).where(Job.chat_ref == chat_ref, col(Job.replied_at).is_(None))
            jobs = list(session.exec(waiting.order_by(col(Job.received_at))).all())
        deliveries = [self.delivery_of(job) for job in jobs]
        found = [d.status_message_id for d in deliveries if d is not None and d.status_message_id is not None]
        return list(dict.fromkeys(found))

    def close_unanalysed(self, chat_ref: str, code: FailureCode, reason: str) -> int:
        """Consent withdrawn: the patient's jobs not analysed yet (queued, running, or failed with the apology
        not sent) are closed as ``code`` and never analysed (``mark_running`` refuses them; a worker already at
        one cannot store its result, since a failed job never becomes done). Their answer, the code's text, is
        due at once: the worker that takes the job's message sends it, or the reconciler. Jobs analysed already
        keep their result. Returns how many were closed."""
        now = utc_now()
        with self._session() as session:
            lock_for_writing(session)
            closing = (
                update(Job)
                .where(
                    col(Job.chat_ref) == chat_ref,
                    col(Job.replied_at).is_(None),
                    col(Job.status).in_([status.value for status in (*WAITING_STATUSES, JobStatus.FAILED)]),
                    or_(col(Job.error_code).is_(None), col(Job.error_code) != code),  # closed once
                    col(Job.delivery).is_not(None),  # not abandoned (worker/reconciler.py): its record stands
                )
                .values(
                    status=JobStatus.FAILED,
                    error_code=code,
                    error_reason=reason[:500],
                    finished_at=now,
                    due_at=self._due(self.deadlines.queued_s),
                )
            )
            closed = session.exec(closing).rowcount
            session.commit()
            return int(closed)

    def set_status_message(self, job_id: uuid.UUID, message_id: int) -> Job:
        """The "Analysing..." message the bot sent: the one the worker edits into the answer."""
        with self._changing(job_id) as job:
            delivery = self.delivery_of(job)
            if delivery is not None:
                job.delivery = self._sealer.seal(delivery.model_copy(update={"status_message_id": message_id}))
        return job

    def set_questionnaire_message(self, job_id: uuid.UUID, message_id: int) -> Job:
        """The questionnaire's message, recorded under the row's lock: of the bot recording it and the worker
        answering the photo without questions (asks_no_questions), the second sees the first, so one of them
        closes it."""
        with self._changing(job_id) as job:
            delivery = self.delivery_of(job)
            if delivery is not None:
                job.delivery = self._sealer.seal(delivery.model_copy(update={"questionnaire_message_id": message_id}))
        return job

    def adopt_delivery(self, job_id: uuid.UUID, delivery: Delivery) -> Job:
        """Delivery data for a row that has none (a task queued before delivery lived on the row)."""
        with self._changing(job_id) as job:
            if job.delivery is None and job.replied_at is None:
                job.delivery = self._sealer.seal(delivery)
                job.due_at = job.due_at or self._due(self.deadlines.queued_s)
        return job

    # The bot

    def record_received(
        self,
        *,
        chat_ref: str,
        media_kind: MediaKind,
        file_unique_id: str | None,
        album_id: str | None = None,
        album_position: int | None = None,
        delivery: Delivery | None = None,
        update_key: str | None = None,
        same_spot_as: uuid.UUID | None = None,
    ) -> Job:
        """A photo the bot accepted: QUEUED, about to be enqueued. An album's photos share ``album_id`` and ask
        no questions (their questionnaire is closed at once: see bot/albums.py). With ``update_key``, idempotent:
        the job an earlier handling of the same update recorded is returned as it is (the caller goes on from
        where it stopped: its status message, its enqueue)."""
        return self._add_once(
            Job(
                chat_ref=chat_ref,
                media_kind=media_kind,
                telegram_file_unique_id=file_unique_id,
                status=JobStatus.QUEUED,
                album_id=album_id,
                album_position=album_position,
                answers=None if album_id is None else PatientAnswers().model_dump(mode="json"),
                answers_closed_at=None if album_id is None else utc_now(),
                delivery=None if delivery is None else self._sealer.seal(delivery),
                update_key=update_key,
                due_at=self._due(self.deadlines.queued_s),
                same_spot_as=same_spot_as,
            )
        )

    def record_refused(
        self,
        *,
        chat_ref: str,
        media_kind: MediaKind,
        file_unique_id: str | None,
        refusal: Refusal,
        update_key: str | None = None,
    ) -> Job:
        """A file the bot refused from its metadata alone, without downloading it (idempotent by update)."""
        return self._add_once(
            Job(
                chat_ref=chat_ref,
                media_kind=media_kind,
                telegram_file_unique_id=file_unique_id,
                status=JobStatus.REJECTED,
                error_code=refusal.code,
                error_reason=refusal.reason,
                finished_at=utc_now(),
                update_key=update_key,
            )
        )

    def by_update(self, update_key: str) -> Job | None:
        """The job recorded for a Telegram update (bot/durable_updates.update_key), if any."""
        with self._session() as session:
            return session.exec(select(Job).where(col(Job.update_key) == update_key)).first()

    def _add_once(self, job: Job) -> Job:
        if job.update_key is None:
            return self._add(job)
        existing = self.by_update(job.update_key)
        if existing is not None:
            return existing
        with self._session() as session:
            session.add(job)
            try:
                session.commit()
            except IntegrityError:  # a concurrent handling of the same update recorded it first
                session.rollback()
                existing = self.by_update(job.update_key)
                if existing is None:
                    raise
                return existing
            session.refresh(job)
            return job

    def mark_enqueued(self, job_id: uuid.UUID, *, queued_at: datetime) -> Job:
        """When the job went onto the broker. Not a transition: a worker may already be running it."""
        with self._changing(job_id) as job:
            job.queued_at = queued_at
            if job.status == JobStatus.QUEUED:
                job.due_at = queued_at + timedelta(seconds=self.deadlines.queued_s)
        return job

    # The worker

    def mark_running(self, job_id: uuid.UUID) -> Job:
        """A worker starts the analysis; each start counts as one delivery attempt. Never for a job the patient
        was answered about (a FAILED job may run again only while its patient has not been told: /delete's
        tombstones are FAILED and answered, and must stay empty)."""
        with self._changing(job_id, JobStatus.RUNNING) as job:
            if job.replied_at is not None or job.error_code in NEVER_ANALYSED:
                # Only a FAILED job gets here (the transition's check refuses the others).
                raise IllegalTransition(job_id, JobStatus.FAILED, "running after it was closed or answered")
            job.started_at = utc_now()
            job.delivery_attempts += 1
            job.due_at = self._due(self.deadlines.running_s)
        return job

    def mark_requeued(self, job_id: uuid.UUID, *, retry_in_s: float = 0.0) -> Job:
        """Handed back alive (a download retry in ``retry_in_s``), so the attempt never counts as a lost
        worker, and the job is not overdue before its retry had its chance."""
        with self._changing(job_id, JobStatus.QUEUED) as job:
            job.due_at = self._due(retry_in_s + self.deadlines.queued_s)
        return job

    def postpone(self, job_id: uuid.UUID, *, retry_in_s: float) -> None:
        """The task retries in ``retry_in_s`` (flood control, network, database): not overdue before that."""
        with self._changing(job_id) as job:
            if job.replied_at is None:
                later = self._due(retry_in_s + self.deadlines.queued_s)
                job.due_at = later if job.due_at is None else max(job.due_at, later)

    def mark_done(
        self,
        job_id: uuid.UUID,
        prediction: ClassifiedPhoto,
        *,
        image_sha256: str,
        spot_change: dict[str, Any] | None = None,
    ) -> Job:
        """The photo-only result; ``spot_change``: a new photo of a spot compared with its earlier one."""
        record = prediction.to_dict()
        skin_tone = record.get("skin_tone")  # {ita, group, outside_measured_range}, or None: not estimated
        with self._changing(job_id, JobStatus.DONE) as job:
            job.image_sha256 = image_sha256
            if spot_change is not None:
                job.spot_change = spot_change
            job.finished_at = utc_now()
            job.model_version = prediction.model_version
            job.ranking = record["ranking"]
            job.photo_ranking = job.ranking  # the photo alone; ``ranking`` becomes the combined one at the end
            job.risk = prediction.risk
            job.melanoma_alert = prediction.melanoma_alert
            job.photo_kind = prediction.photo_kind
            job.skin_tone_ita = None if skin_tone is None else float(skin_tone["ita"])
            job.skin_tone_caveat = bool(skin_tone and skin_tone["outside_measured_range"])
            job.raised_by_skin_tone = bool(record.get("raised_by_skin_tone"))
            other_kind = record.get("other_kind")  # {risk, melanoma_alert} where the kind was uncertain, else None
            job.other_kind_risk = None if other_kind is None else RiskLevel(other_kind["risk"])
            job.other_kind_alert = None if other_kind is None else bool(other_kind["melanoma_alert"])
            waiting_s = self.deadlines.questionnaire_s if job.answers_closed_at is None else 0.0
            job.due_at = self._due(waiting_s + self.deadlines.queued_s)
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
            job.skin_tone_ita = earlier.skin_tone_ita
            job.skin_tone_caveat = earlier.skin_tone_caveat
            job.raised_by_skin_tone = earlier.raised_by_skin_tone
            job.other_kind_risk = earlier.other_kind_risk
            job.other_kind_alert = earlier.other_kind_alert
            job.answers = earlier.answers
            job.answers_closed_at = job.answers_closed_at or utc_now()
            job.due_at = self._due(self.deadlines.queued_s)  # answered at once
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
            # Due again shortly: a worker that dies before the reply is out leaves the claim to the reconciler.
            in_flight = {"replied_at": now, "due_at": now + timedelta(seconds=self.deadlines.queued_s)}
            claimed = session.exec(update(Job).where(unanswered, col(Job.id).in_(ids)).values(**in_flight))
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

    def album_replied(self, job_ids: list[uuid.UUID]) -> None:
        """The album's reply went out: its photos' delivery data is erased, nothing is due any more."""
        with self._session() as session:
            session.exec(update(Job).where(col(Job.id).in_(job_ids)).values(delivery=None, due_at=None))
            session.commit()

    def mark_rejected(self, job_id: uuid.UUID, refusal: Refusal, *, image_sha256: str | None = None) -> Job:
        with self._changing(job_id, JobStatus.REJECTED) as job:
            job.error_code = refusal.code
            job.error_reason = refusal.reason
            job.image_sha256 = image_sha256
            job.finished_at = utc_now()
            job.due_at = self._due(self.deadlines.queued_s)  # the answer follows at once
        return job

    def mark_failed(self, job_id: uuid.UUID, code: FailureCode, reason: str) -> Job:
        with self._changing(job_id, JobStatus.FAILED) as job:
            job.error_code = code
            job.error_reason = reason[:500]
            job.finished_at = utc_now()
            job.due_at = self._due(self.deadlines.queued_s)  # the apology follows at once
        return job

    def mark_replied(self, job_id: uuid.UUID) -> Job:
        """The patient got the final answer (result, refusal or apology); only once. The delivery data is
        erased: nothing about the chat is kept once it is answered."""
        with self._changing(job_id) as job:
            if job.status not in FINAL_STATUSES or job.replied_at is not None:
                raise IllegalTransition(job_id, job.status, "replied" if job.replied_at is None else "replied twice")
            job.replied_at = utc_now()
            job.delivery = None
            job.due_at = None
        return job

    # The reconciler (worker/reconciler.py): conditional UPDATEs, so that of two concurrent runs one acts

    def claim_overdue(self, *, queue_front: datetime | None = None, limit: int = 200) -> list[OverdueJob]:
        """Jobs past their ``due_at``, each claimed once: its try counted and its next deadline set. A job answered
        has no ``due_at``; one with ``replied_at`` and a ``due_at`` is an album whose reply a worker claimed and
        never confirmed (it died before sending): the claim is released, so the next try sends it.

        ``queue_front``: when the oldest message still waiting in the classify queue was published (None: none
        waits). A job's last step (when ``due_at`` was set, the deadline before it) came after the front: the
        workers have not even reached the messages published before it, so its own next message (to classify,
        to finalize) is waiting behind a backlog, late, not lost. It is overdue only once the workers have taken
        the queue past it, or after the backlog deadline. A running job is not waiting on the queue: its
        deadline (a dead worker) stands as it is."""
        now = utc_now()
        # Answered jobs have no due_at; of those with a reply recorded, only an album's claim may be taken back.
        overdue = and_(col(Job.due_at) <= now, or_(col(Job.replied_at).is_(None), col(Job.album_id).is_not(None)))
        if queue_front is not None:
            before_the_front = queue_front - PUBLISH_LAG + timedelta(seconds=self.deadlines.queued_s)
            taken_from_the_queue = col(Job.due_at) < before_the_front
            past_backlog_deadline = col(Job.due_at) <= now - timedelta(seconds=self.deadlines.backlog_s)
            overdue = and_(
                overdue,
                or_(col(Job.status) == JobStatus.RUNNING, taken_from_the_queue, past_backlog_deadline),
            )
        with self._session() as session:
            rows = session.exec(
                select(Job.id, Job.status, Job.requeues).where(overdue).order_by(col(Job.due_at)).limit(limit)
            ).all()
            claimed: list[OverdueJob] = []
            for job_id, status, requeues in rows:
                won = session.exec(
                    update(Job)
                    .where(col(Job.id) == job_id, col(Job.requeues) == requeues, overdue)
                    .values(
                        requeues=requeues + 1,
                        due_at=now + timedelta(seconds=self.deadlines.queued_s),
                        replied_at=None,
                    )
                )
                session.commit()
                if won.rowcount == 1:
                    claimed.append(OverdueJob(job_id, JobStatus(status), requeues + 1))
            return claimed

    def claim_slow_notice(self, *, waiting_longer_than_s: float, limit: int = 200) -> list[uuid.UUID]:
        """Jobs whose patient has waited longer than ``waiting_longer_than_s`` for an analysis not finished yet
        and was not told so; each is claimed once (``slow_notice_at``)."""
        now = utc_now()
        waiting = [status.value for status in WAITING_STATUSES]
        conditions = (
            col(Job.slow_notice_at).is_(None),
            col(Job.replied_at).is_(None),
            col(Job.due_at).is_not(None),
            col(Job.delivery).is_not(None),
            col(Job.status).in_(waiting),
            col(Job.album_id).is_(None),  # an album's one message waits for all its photos: no notice per photo
        )
        with self._session() as session:
            candidates = session.exec(
                select(Job.id)
                .where(*conditions, col(Job.received_at) <= now - timedelta(seconds=waiting_longer_than_s))
                .limit(limit)
            ).all()
            claimed: list[uuid.UUID] = []
            for job_id in candidates:
                won = session.exec(update(Job).where(col(Job.id) == job_id, *conditions).values(slow_notice_at=now))
                session.commit()
                if won.rowcount == 1:
                    claimed.append(job_id)
            return claimed

    def mark_slow_notice(self, job_id: uuid.UUID) -> bool:
        """The patient is being told now that their analysis is delayed (the bot, when the broker is down); False
        if they already were (by an earlier try or the reconciler), so the notice goes out once."""
        with self._session() as session:
            won = session.exec(
                update(Job)
                .where(col(Job.id) == job_id, col(Job.slow_notice_at).is_(None), col(Job.replied_at).is_(None))
                .values(slow_notice_at=utc_now())
            )
            session.commit()
            return bool(won.rowcount == 1)

    def abandon(self, job_id: uuid.UUID) -> Job:
        """The patient cannot be reached (every try and apology failed): erase the delivery data, stop trying."""
        with self._changing(job_id) as job:
            job.delivery = None
            job.due_at = None
        return job

    # The questionnaire (answers meet the photo's result; see worker/flow.py)

    def record_answers(self, job_id: uuid.UUID, answers: PatientAnswers, *, close: bool) -> Job:
        """The patient's answers so far; ``close``: the questionnaire is over (answered or skipped). Answers
        that come after it closed (a timeout), or once the patient withdrew their consent (a tap handled by a
        process that did not see the withdrawal), change nothing: the job is returned as it is."""
        with self._changing(job_id) as job:
            if job.answers_closed_at is None and job.replied_at is None:  # replied: answered, or erased (/delete)
                if _has_consent(job):
                    job.answers = answers.model_dump(mode="json")
                if close:  # a time, nothing about the patient: the questionnaire closes either way
                    job.answers_closed_at = utc_now()
                    if job.status == JobStatus.DONE and job.replied_at is None:
                        job.due_at = self._due(self.deadlines.queued_s)  # the bot queues the final result now
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
        A high-risk result commits together with its ``clinician_alert`` outbox row (shared/clinic/store.py)."""
        with self._changing(job_id) as job:
            if job.status != JobStatus.DONE or job.photo_ranking is None:
                raise IllegalTransition(job_id, job.status, "a combined result")
            job.ranking = prediction.to_dict()["ranking"]
            job.risk = prediction.risk
            job.melanoma_alert = prediction.melanoma_alert
            job.answers_used = list(prediction.answers_used)
            job.answer_effects = {name: effect.value for name, effect in (answer_effects or {}).items()}
            job.malignant_told_low_per_100 = malignant_told_low_per_100
            # With the answers, a LOW may have come or gone: whether the skin tone is what keeps it MEDIUM now.
            job.raised_by_skin_tone = prediction.raised_by_skin_tone
            if job.spot_change is not None:  # whether the change raised the risk the patient reads
                job.spot_change = {
                    **job.spot_change,
                    "raised_risk": bool(getattr(prediction, "raised_by_change", False)),
                }
            if clinician_alert is not None and job.risk is not None and forwarded(job.risk):
                clinician_alert.add_to(object_session(job), job)  # type: ignore[arg-type]
        return job

    def mark_clinician_notified(self, job_id: uuid.UUID, chat_id: int) -> Job:
        """One clinician chat was told about this high-risk result (saved per chat, so a retry skips it)."""
        with self._changing(job_id) as job:
            if job.status != JobStatus.DONE or job.risk is None or not forwarded(job.risk):
                raise IllegalTransition(job_id, job.status, "a clinician alert")
            job.clinicians_notified = {**(job.clinicians_notified or {}), str(chat_id): utc_now().isoformat()}
        return job


@lru_cache
def get_job_store() -> JobStore:
    """The process's job store, on the configured audit database."""
    from shared.db import get_engine

    return JobStore(get_engine())


def _has_consent(job: Job) -> bool:
    """Whether the job's patient still consents (to any version of the privacy text), read in the session that
    is changing the job: nothing about a patient is written after "No thanks" or /delete."""
    session = object_session(job)
    assert session is not None
    return session.execute(select(Consent.id).where(col(Consent.chat_ref) == job.chat_ref).limit(1)).first() is not None
