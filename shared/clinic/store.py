"""Clinician alerts, shared by the worker (which sends them) and the bot (which handles the clinicians' buttons
and commands): the outbox row written with a high-risk result, per-chat deliveries recorded so each alert is
sent exactly once where Telegram allows it, claims and resolutions, threads, the closed loop's reminders and
escalations on a working-time calendar, and what /pending, /case, /stats and `skinsense audit` read.

Every state change is one conditional UPDATE (``... WHERE state = 'open'``), so two clinicians pressing at
once, or beat running twice, change a row once: the loser sees rowcount 0 and reads who won.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, cast, func, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.audit import (
    AlertDeliveryKind,
    AlertResolution,
    AlertState,
    ClinicalFinding,
    ClinicianAction,
    ClinicianActionKind,
    ClinicianAlert,
    ClinicianAlertDelivery,
    Consent,
    Job,
    JobStatus,
    MediaKind,
    Referral,
    utc_now,
)
from shared.clinic.calendar import WorkingCalendar
from shared.clinic.views import (
    CASE_REF_LENGTHS,
    NO_CONSENT_REF,
    REFUSED_IN_PATIENT_CHAT,
    AlertOutcome,
    AlertView,
    Attempt,
    Decision,
    EarlierResult,
    PendingCase,
    ReviewTime,
    ThreadPhoto,
    case_ref_digits,
    patient_chat_label,
    patient_reference,
)
from shared.config import Settings
from shared.labels import RiskLevel
from shared.questionnaire import answers_from_record

log = logging.getLogger(__name__)


ERASED_PATIENT = "purged"  # an alert's patient reference once erased (as shared.retention.PURGED_CHAT_REF)


# An attempt older than this with no outcome recorded belongs to a process that died while sending: its
# outcome is unknown and the next attempt may go (saying it may be a repeat). Longer than a Telegram call
# with its timeouts (worker/telegram.py: 30 s read, 30 s write).
ATTEMPT_LEASE = timedelta(seconds=90)


# The presses that resolve an alert ("Ask for a better photo" does not: the alert waits for the photo).
RESOLUTION_OF_ACTION: dict[ClinicianActionKind, AlertResolution] = {
    ClinicianActionKind.NO_ACTION: AlertResolution.NO_ACTION,
    ClinicianActionKind.CONFIRM_NO_ACTION: AlertResolution.NO_ACTION,
    ClinicianActionKind.APPOINTMENT: AlertResolution.APPOINTMENT,
}


class SealedPhoto(BaseModel):
    file_id: str
    media_kind: MediaKind


class SealedContact(BaseModel):
    chat_id: int


@dataclass(frozen=True)
class ThreadPolicy:
    """High-risk photos of one patient within ``window_s`` of the thread's first share one alert thread; at
    most ``forwards`` of them are forwarded (settings: clinician_thread_window_s, clinician_forwards_per_thread)."""

    window_s: int = 3600
    forwards: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> ThreadPolicy:
        return cls(settings.clinician_thread_window_s, settings.clinician_forwards_per_thread)


@dataclass(frozen=True)
class NewClinicianAlert:
    """What the finalize step gives ``JobStore.mark_combined`` so that a high-risk result and its alert commit
    together: the photo to forward and the patient's chat (both sealed in the row), and the threading policy."""

    file_id: str
    media_kind: MediaKind
    patient_chat_id: int | None
    threads: ThreadPolicy = ThreadPolicy()

    def add_to(self, session: Session, job: Job) -> ClinicianAlert:
        """The alert's outbox row in ``session`` (the result's transaction); once per job."""
        from shared.sealing import seal

        existing = session.exec(select(ClinicianAlert).where(ClinicianAlert.job_id == job.id)).first()
        if existing is not None:
            return existing
        _lock_patient_threads(session, job.chat_ref)
        now = utc_now()
        root = session.exec(
            select(ClinicianAlert)
            .where(
                ClinicianAlert.chat_ref == job.chat_ref,
                col(ClinicianAlert.thread_id) == col(ClinicianAlert.id),
                col(ClinicianAlert.state) != AlertState.RESOLVED,
                col(ClinicianAlert.created_at) >= now - timedelta(seconds=self.threads.window_s),
            )
            .order_by(col(ClinicianAlert.created_at))
        ).first()
        alert = ClinicianAlert(
            job_id=job.id,
            chat_ref=job.chat_ref,
            thread_id=uuid.uuid4(),
            created_at=now,
            sealed_photo=seal(SealedPhoto(file_id=self.file_id, media_kind=self.media_kind)),
            sealed_contact=None if self.patient_chat_id is None else seal(SealedContact(chat_id=self.patient_chat_id)),
        )
        if root is None:
            alert.thread_id = alert.id
        else:
            alert.thread_id = root.id
            forwarded = session.exec(
                select(func.count())
                .select_from(ClinicianAlert)
                .where(ClinicianAlert.thread_id == root.id, col(ClinicianAlert.forwarded).is_(True))
            ).one()
            alert.forwarded = int(forwarded) < self.threads.forwards
        session.add(alert)
        return alert


def _lock_patient_threads(session: Session, chat_ref: str) -> None:
    """Two results of one patient finishing at once must agree on the thread. PostgreSQL: a transaction-scoped
    advisory lock per patient. SQLite: the result's own UPDATE (flushed before the query) already holds the
    database's single write lock until commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"clinician-thread:{chat_ref}"})


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session:
            yield session

    def load(self, alert_id: uuid.UUID) -> ClinicianAlert | None:
        with self._session() as session:
            return session.get(ClinicianAlert, alert_id)

    def for_job(self, job_id: uuid.UUID) -> ClinicianAlert | None:
        with self._session() as session:
            return session.exec(select(ClinicianAlert).where(ClinicianAlert.job_id == job_id)).first()

    def thread(self, thread_id: uuid.UUID) -> list[ClinicianAlert]:
        with self._session() as session:
            statement = (
                select(ClinicianAlert)
                .where(ClinicianAlert.thread_id == thread_id)
                .order_by(col(ClinicianAlert.created_at), col(ClinicianAlert.id))
            )
            return list(session.exec(statement).all())

    def view(self, alert_id: uuid.UUID) -> AlertView | None:
        """The alert as a clinician reads it; None if it (or its job) was erased."""
        with self._session() as session:
            alert = session.get(ClinicianAlert, alert_id)
            if alert is None:
                return None
            job = session.get(Job, alert.job_id)
            root = session.get(ClinicianAlert, alert.thread_id) or alert
            if job is None or job.ranking is None or job.risk is None:
                return None
            earlier = session.exec(
                select(Job.received_at, Job.risk)
                .where(
                    Job.chat_ref == job.chat_ref,
                    col(Job.received_at) < job.received_at,
                    Job.status == JobStatus.DONE,
                )
                .order_by(col(Job.received_at).desc())
            ).all()
            asked = _photo_asked(session, root.id)
            thread_rows = session.exec(
                select(ClinicianAlert.job_id, Job.risk, ClinicianAlert.forwarded)
                .join(Job, col(Job.id) == col(ClinicianAlert.job_id))
                .where(ClinicianAlert.thread_id == root.id)
                .order_by(col(ClinicianAlert.created_at), col(ClinicianAlert.id))
            ).all()
            return AlertView(
                alert_id=alert.id,
                thread_id=alert.thread_id,
                job_id=job.id,
                patient_ref=patient_reference(job.chat_ref),
                created_at=alert.created_at,
                ranking=job.ranking,
                risk=job.risk,
                melanoma_alert=bool(job.melanoma_alert),
                photo_kind=job.photo_kind,
                answers=answers_from_record(job.answers),
                model_version=job.model_version or "unknown",
                earlier_results=[EarlierResult(received, _risk(risk)) for received, risk in earlier],
                thread_photos=[ThreadPhoto(job_id, _risk(risk), forwarded) for job_id, risk, forwarded in thread_rows],
                state=root.state,
                claimed_by=root.claimed_by,
                claimed_at=root.claimed_at,
                resolved_by=root.resolved_by,
                resolved_at=root.resolved_at,
                resolution=root.resolution,
                reminded_at=root.reminded_at,
                escalated_at=root.escalated_at,
                photo_asked_by=None if asked is None else asked.user_name,
                photo_asked_at=None if asked is None else asked.at,
                patient_told_at=root.patient_told_at,
                conclusion=root.conclusion,
                concluded_by=root.concluded_by,
                referral=root.referral,
                biopsy_result=root.biopsy_result,
            )

    # Sending, exactly once where Telegram allows it

    def unsent_jobs(self, limit: int = 100) -> list[uuid.UUID]:
        """The jobs of alerts with deliveries still to make (the sweep queues them), oldest first."""
        with self._session() as session:
            statement = (
                select(ClinicianAlert.job_id)
                .where(col(ClinicianAlert.sent_at).is_(None))
                .order_by(col(ClinicianAlert.created_at))
                .limit(limit)
            )
            return list(session.exec(statement).all())

    def deliveries(self, alert_ids: Sequence[uuid.UUID]) -> list[ClinicianAlertDelivery]:
        with self._session() as session:
            statement = select(ClinicianAlertDelivery).where(col(ClinicianAlertDelivery.alert_id).in_(alert_ids))
            return list(session.exec(statement).all())

    def begin_attempt(self, alert_id: uuid.UUID, chat_id: int, kind: AlertDeliveryKind) -> Attempt | None:
        """Record an attempt to send this delivery before sending it; None when there is nothing to do here
        (already sent, or another process is sending it right now)."""
        with self._session() as session:
            try:
                session.add(ClinicianAlertDelivery(alert_id=alert_id, chat_id=chat_id, kind=kind))
                session.commit()
            except IntegrityError:
                session.rollback()  # the row exists: an earlier attempt
        now = utc_now()
        key = _delivery_key(alert_id, chat_id, kind)
        with self._session() as session:
            claimed = session.exec(
                update(ClinicianAlertDelivery)
                .where(*key)
                .where(col(ClinicianAlertDelivery.message_id).is_(None))
                .where(
                    col(ClinicianAlertDelivery.attempt_started_at).is_(None)
                    | (col(ClinicianAlertDelivery.attempt_started_at) < now - ATTEMPT_LEASE)
                )
                .values(
                    # An attempt still marked as started is one whose process died mid-call: outcome unknown.
                    possibly_repeated=col(ClinicianAlertDelivery.possibly_repeated)
                    | col(ClinicianAlertDelivery.attempt_started_at).is_not(None),
                    attempt_started_at=now,
                    attempts=col(ClinicianAlertDelivery.attempts) + 1,
                )
            )
            session.commit()
            if claimed.rowcount != 1:
                return None
            delivery = session.exec(select(ClinicianAlertDelivery).where(*key)).one()
            return Attempt(
                alert_id, chat_id, kind, delivery.possibly_repeated, delivery.photo_message_id, delivery.attempts
            )

    def record_photo_sent(self, attempt: Attempt, photo_message_id: int) -> None:
        self._update_delivery(attempt, photo_message_id=photo_message_id)

    def record_sent(self, attempt: Attempt, message_id: int) -> None:
        self._update_delivery(attempt, message_id=message_id, sent_at=utc_now(), attempt_started_at=None)

    def record_failed(self, attempt: Attempt, *, outcome_known: bool, refused: bool) -> None:
        """The call failed. Known (Telegram refused it, or it never reached Telegram: nothing was sent): the next
        attempt is a plain one. Unknown (a timeout, a lost response): it may have arrived, so the next one says
        it may be a repeat. Only a refusal (a chat the bot left, a bad request) counts toward giving the delivery
        up: passing trouble (flood control, the network, Telegram's 5xx) is waited out however long it lasts."""
        values: dict[str, Any] = {"attempt_started_at": None}
        if not outcome_known:
            values["possibly_repeated"] = True
        if not refused:
            values["attempts"] = col(ClinicianAlertDelivery.attempts) - 1
        self._update_delivery(attempt, **values)

    def record_not_tried(self, attempt: Attempt) -> None:
        """The call was never made (this deployment's own budget said wait): the attempt does not count."""
        self._update_delivery(attempt, attempt_started_at=None, attempts=col(ClinicianAlertDelivery.attempts) - 1)

    def _update_delivery(self, attempt: Attempt, **values: Any) -> None:
        with self._session() as session:
            session.exec(
                update(ClinicianAlertDelivery)
                .where(*_delivery_key(attempt.alert_id, attempt.chat_id, attempt.kind))
                .values(**values)
            )
            session.commit()

    def mark_sent(self, alert_id: uuid.UUID) -> None:
        """Every delivery of this alert is made (until a reminder or an escalation asks for more)."""
        with self._session() as session:
            session.exec(update(ClinicianAlert).where(col(ClinicianAlert.id) == alert_id).values(sent_at=utc_now()))
            session.commit()

    # Presses

    def claim(self, thread_id: uuid.UUID, who: str) -> Decision | None:
        """ "I'll review": only an open alert can be claimed; None if the alert is gone (erased)."""
        now = utc_now()
        return self._decide(
            thread_id,
            update(ClinicianAlert)
            .where(col(ClinicianAlert.id) == thread_id, col(ClinicianAlert.state) == AlertState.OPEN)
            .values(state=AlertState.CLAIMED, claimed_at=now, claimed_by=who),
        )

    def ask_for_photo(self, thread_id: uuid.UUID, who: str) -> Decision | None:
        """ "Ask for a better photo": an open or claimed alert waits for the photo, still unresolved (and claimed:
        by whoever had it, else by the asker); None if the alert is gone."""
        now = utc_now()
        return self._decide(
            thread_id,
            update(ClinicianAlert)
            .where(
                col(ClinicianAlert.id) == thread_id,
                col(ClinicianAlert.state).in_([AlertState.OPEN, AlertState.CLAIMED]),
            )
            .values(
                state=AlertState.AWAITING_PHOTO,
                claimed_at=func.coalesce(col(ClinicianAlert.claimed_at), now),
                claimed_by=func.coalesce(col(ClinicianAlert.claimed_by), who),
            ),
        )

    def photo_asked_recorded(self, thread_id: uuid.UUID) -> bool:
        """Whether a "better photo" press on this thread was recorded as done (its handling finished)."""
        with self._session() as session:
            return _photo_asked(session, thread_id) is not None

    def resolve(self, thread_id: uuid.UUID, resolution: AlertResolution, who: str) -> Decision | None:
        """A resolution (by whoever presses, claimed or not); only once. An unclaimed alert counts as claimed
        by the resolver at the same moment."""
        now = utc_now()
        statement = (
            update(ClinicianAlert)
            .where(col(ClinicianAlert.id) == thread_id, col(ClinicianAlert.state) != AlertState.RESOLVED)
            .values(
                state=AlertState.RESOLVED,
                resolved_at=now,
                resolved_by=who,
                resolution=resolution,
                claimed_at=func.coalesce(col(ClinicianAlert.claimed_at), now),
                claimed_by=func.coalesce(col(ClinicianAlert.claimed_by), who),
            )
        )
        return self._decide(thread_id, statement)

    # Closing the loop: the clinician's conclusion, referral and the biopsy's result (on the thread's root)

    def conclude(self, thread_id: uuid.UUID, finding: ClinicalFinding, who: str) -> Decision | None:
        """What the clinician believes it is; only on a resolved alert (they may correct it: the last one counts,
        each is in the clinician actions)."""
        now = utc_now()
        return self._decide(
            thread_id,
            update(ClinicianAlert)
            .where(col(ClinicianAlert.id) == thread_id, col(ClinicianAlert.state) == AlertState.RESOLVED)
            .values(conclusion=finding, concluded_by=who, concluded_at=now),
        )

    def refer(self, thread_id: uuid.UUID, referral: Referral, who: str) -> Decision | None:
        """Whether the clinician referred for a biopsy or an appointment; only once a conclusion is recorded."""
        now = utc_now()
        return self._decide(
            thread_id,
            update(ClinicianAlert)
            .where(col(ClinicianAlert.id) == thread_id, col(ClinicianAlert.conclusion).is_not(None))
            .values(referral=referral, referred_by=who, referred_at=now),
        )

    def record_biopsy(self, thread_id: uuid.UUID, result: ClinicalFinding, who: str) -> Decision | None:
        """The biopsy's result, typed later with /case; on any alert that was not erased."""
        now = utc_now()
        return self._decide(
            thread_id,
            update(ClinicianAlert)
            .where(col(ClinicianAlert.id) == thread_id)
            .values(biopsy_result=result, biopsy_by=who, biopsy_at=now),
        )

    def _decide(self, thread_id: uuid.UUID, statement: Any) -> Decision | None:
        with self._session() as session:
            changed = session.exec(statement).rowcount == 1
            session.commit()
            alert = session.get(ClinicianAlert, thread_id)
            return None if alert is None else Decision(changed, alert)

    def contact(self, thread_id: uuid.UUID) -> SealedContact | None:
        """The patient's chat, unsealed, while the thread holds it."""
        from shared.sealing import SealBroken, unseal

        root = self.load(thread_id)
        if root is None or root.sealed_contact is None:
            return None
        try:
            return unseal(root.sealed_contact, SealedContact)
        except SealBroken:
            return None

    def photo(self, alert_id: uuid.UUID) -> SealedPhoto | None:
        """The alert's photo, unsealed, while the alert holds it."""
        alert = self.load(alert_id)
        return None if alert is None else unsealed_photo(alert)

    def record_case_message(self, alert_id: uuid.UUID, chat_id: int, message_id: int) -> None:
        """A /case copy of the alert in a clinician chat: the latest one in each chat is kept current like the
        alert (edited as its state changes)."""
        now = utc_now()
        key = _delivery_key(alert_id, chat_id, AlertDeliveryKind.CASE)
        with self._session() as session:
            try:
                session.add(
                    ClinicianAlertDelivery(
                        alert_id=alert_id,
                        chat_id=chat_id,
                        kind=AlertDeliveryKind.CASE,
                        attempts=1,
                        message_id=message_id,
                        sent_at=now,
                    )
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                session.exec(update(ClinicianAlertDelivery).where(*key).values(message_id=message_id, sent_at=now))
                session.commit()

    def record_patient_told(self, thread_id: uuid.UUID) -> None:
        with self._session() as session:
            session.exec(
                update(ClinicianAlert).where(col(ClinicianAlert.id) == thread_id).values(patient_told_at=utc_now())
            )
            session.commit()

    def erase_secrets(self, thread_id: uuid.UUID) -> None:
        """A resolved thread needs neither the photo nor the patient's chat any more."""
        with self._session() as session:
            session.exec(
                update(ClinicianAlert)
                .where(col(ClinicianAlert.thread_id) == thread_id)
                .values(sealed_photo=None, sealed_contact=None)
            )
            session.commit()

    def erase_resolved_secrets(self, older_than: timedelta = timedelta(minutes=10)) -> int:
        """The sweep's safety net: secrets left on threads resolved a while ago (a bot that died in between)."""
        with self._session() as session:
            resolved = select(ClinicianAlert.id).where(
                col(ClinicianAlert.state) == AlertState.RESOLVED,
                col(ClinicianAlert.resolved_at) < utc_now() - older_than,
            )
            result = session.exec(
                update(ClinicianAlert)
                .where(col(ClinicianAlert.thread_id).in_(resolved))
                .where(col(ClinicianAlert.sealed_photo).is_not(None) | col(ClinicianAlert.sealed_contact).is_not(None))
                .values(sealed_photo=None, sealed_contact=None)
            )
            session.commit()
            return int(result.rowcount)

    def record_action(
        self,
        *,
        alert_id: uuid.UUID | None,
        action: str,
        chat: str,
        user_id: int | None,
        user_name: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> ClinicianAction:
        """``detail``: what was chosen (a conclusion, a referral, a biopsy's result)."""
        with self._session() as session:
            row = ClinicianAction(
                alert_id=alert_id,
                action=action[:32],
                chat=chat[:64],
                user_id=user_id,
                user_name=None if user_name is None else user_name[:128],
                outcome=outcome,
                detail=None if detail is None else detail[:32],
            )
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def record_refusal(
        self,
        *,
        alert_id: uuid.UUID | None,
        action: str,
        clinician_chat_id: int | None,
        patient_chat_ref: str | None,
        user_id: int | None,
    ) -> ClinicianAction:
        """A refused press or command (the caller samples them: at most one row per chat and interval). The
        action is a known name or "unknown", never the sender's own text; the alert only one that exists. A
        patient's chat is named by its reference only if the patient consented, else not at all."""
        with self._session() as session:
            if alert_id is not None and session.get(ClinicianAlert, alert_id) is None:
                alert_id = None
            if clinician_chat_id is not None:
                chat = str(clinician_chat_id)
            else:
                consented = patient_chat_ref is not None and (
                    session.exec(select(Consent.id).where(Consent.chat_ref == patient_chat_ref)).first() is not None
                )
                chat = patient_chat_label(patient_chat_ref if consented and patient_chat_ref else NO_CONSENT_REF)
                user_id = None  # a patient's Telegram id is never stored
            row = ClinicianAction(
                alert_id=alert_id, action=action, chat=chat, user_id=user_id, user_name=None, outcome="refused"
            )
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def actions(self, since: datetime | None = None) -> list[ClinicianAction]:
        with self._session() as session:
            statement = select(ClinicianAction).order_by(col(ClinicianAction.at))
            if since is not None:
                statement = statement.where(col(ClinicianAction.at) >= since)
            return list(session.exec(statement).all())

    # The closed loop

    def mark_reminders_due(
        self, calendar: WorkingCalendar, within_hours: float, now: datetime | None = None
    ) -> list[uuid.UUID]:
        """Threads sent but not claimed within ``within_hours`` working hours: marked for a reminder (and to
        be sent again); each once, however often this runs."""
        still_open = (col(ClinicianAlert.state) == AlertState.OPEN, col(ClinicianAlert.reminded_at).is_(None))
        return self._mark_threads_past(calendar, within_hours * 3600, still_open, "reminded_at", now or utc_now())

    def mark_escalations_due(
        self, calendar: WorkingCalendar, within_days: float, now: datetime | None = None
    ) -> list[uuid.UUID]:
        """Threads not resolved within ``within_days`` working days: marked for the lead chat; each once."""
        unresolved = (col(ClinicianAlert.state) != AlertState.RESOLVED, col(ClinicianAlert.escalated_at).is_(None))
        limit = within_days * calendar.day_seconds
        return self._mark_threads_past(calendar, limit, unresolved, "escalated_at", now or utc_now())

    def _mark_threads_past(
        self, calendar: WorkingCalendar, limit_s: float, conditions: tuple[Any, ...], stamp: str, now: datetime
    ) -> list[uuid.UUID]:
        """Thread roots meeting ``conditions`` older than ``limit_s`` working seconds: each stamped (``stamp``
        set to now, and to be sent again) under the same conditions, so once however often this runs."""
        with self._session() as session:
            candidates = session.exec(
                select(ClinicianAlert).where(
                    col(ClinicianAlert.thread_id) == col(ClinicianAlert.id),
                    col(ClinicianAlert.chat_ref) != ERASED_PATIENT,
                    *conditions,
                )
            ).all()
        due = [a.id for a in candidates if calendar.working_seconds(a.created_at, now) >= limit_s]
        return [
            thread_id
            for thread_id in due
            if self._mark(
                update(ClinicianAlert)
                .where(col(ClinicianAlert.id) == thread_id, *conditions)
                .values({stamp: now, "sent_at": None})
            )
        ]

    def _mark(self, statement: Any) -> bool:
        with self._session() as session:
            changed = session.exec(statement).rowcount == 1
            session.commit()
            return bool(changed)

    # What clinicians and auditors read

    def for_case_ref(self, ref: str) -> list[ClinicianAlert]:
        """/case: the alert whose job id is ``ref`` (a job id, or its start: see ``case_ref_digits``); more than
        one when a start is ambiguous (at most two are looked up), none when no alert has it."""
        digits = case_ref_digits(ref)
        if digits is None:
            return []
        job_ids = [uuid.UUID(digits)] if len(digits) == 32 else self._job_ids_starting(digits)
        alerts = [self.for_job(job_id) for job_id in job_ids]
        return [alert for alert in alerts if alert is not None]

    def _job_ids_starting(self, digits: str, limit: int = 2) -> list[uuid.UUID]:
        """Job ids of alerts that start with ``digits`` (lower-case hex, no dashes), at most ``limit``."""
        as_hex = func.replace(func.lower(cast(col(ClinicianAlert.job_id), String)), "-", "")
        with self._session() as session:
            statement = select(ClinicianAlert.job_id).where(as_hex.startswith(digits)).limit(limit)
            return list(session.exec(statement).all())

    def case_ref(self, job_id: uuid.UUID) -> str:
        """The shortest start of the job id (8 hex digits, more only if another alert's job shares them) that
        names this alert alone: what /case_<ref> and /case <ref> take."""
        for length in CASE_REF_LENGTHS:
            ref = job_id.hex[:length]
            if len(self._job_ids_starting(ref)) <= 1:
                return ref
        return job_id.hex[: CASE_REF_LENGTHS[-1]]

    def pending_cases(self) -> list[PendingCase]:
        """/pending: the unresolved threads, oldest first, with their results and case commands."""
        roots = self.pending()
        with self._session() as session:
            jobs = {
                job.id: job for job in session.exec(select(Job).where(col(Job.id).in_([a.job_id for a in roots]))).all()
            }
        cases = []
        for alert in roots:
            job = jobs.get(alert.job_id)
            cases.append(
                PendingCase(
                    alert=alert,
                    case_ref=self.case_ref(alert.job_id),
                    risk=None if job is None else _risk(job.risk),
                    ranking=None if job is None else job.ranking,
                    melanoma_alert=bool(job is not None and job.melanoma_alert),
                )
            )
        return cases

    def pending(self) -> list[ClinicianAlert]:
        """Unresolved threads (their roots), oldest first."""
        with self._session() as session:
            statement = (
                select(ClinicianAlert)
                .where(
                    col(ClinicianAlert.thread_id) == col(ClinicianAlert.id),
                    col(ClinicianAlert.state) != AlertState.RESOLVED,
                    col(ClinicianAlert.chat_ref) != ERASED_PATIENT,
                )
                .order_by(col(ClinicianAlert.created_at))
            )
            return list(session.exec(statement).all())

    def count_since(self, since: datetime) -> int:
        with self._session() as session:
            statement = select(func.count()).select_from(ClinicianAlert).where(col(ClinicianAlert.created_at) >= since)
            return int(session.exec(statement).one())

    def review_times(self, since: datetime | None = None, until: datetime | None = None) -> list[ReviewTime]:
        """Each thread's times from alert to claim and to resolution, oldest first."""
        with self._session() as session:
            statement = (
                select(ClinicianAlert)
                .where(col(ClinicianAlert.thread_id) == col(ClinicianAlert.id))
                .order_by(col(ClinicianAlert.created_at))
            )
            if since is not None:
                statement = statement.where(col(ClinicianAlert.created_at) >= since)
            if until is not None:
                statement = statement.where(col(ClinicianAlert.created_at) < until)
            return [
                ReviewTime(
                    a.id, a.job_id, a.created_at, a.claimed_at, a.resolved_at, a.resolution, a.claimed_by, a.resolved_by
                )
                for a in session.exec(statement).all()
            ]

    def alert_outcomes(self, since: datetime | None = None, until: datetime | None = None) -> list[AlertOutcome]:
        """Each thread's root alert sent in the period, with its job's model side and the clinicians' outcome."""
        with self._session() as session:
            statement = (
                select(ClinicianAlert, Job)
                .join(Job, col(Job.id) == col(ClinicianAlert.job_id))
                .where(col(ClinicianAlert.thread_id) == col(ClinicianAlert.id))
                .order_by(col(ClinicianAlert.created_at))
            )
            if since is not None:
                statement = statement.where(col(ClinicianAlert.created_at) >= since)
            if until is not None:
                statement = statement.where(col(ClinicianAlert.created_at) < until)
            return [
                AlertOutcome(
                    thread_id=alert.id,
                    job_id=alert.job_id,
                    created_at=alert.created_at,
                    forwarded=alert.forwarded,
                    photo_kind=job.photo_kind,
                    model_version=job.model_version or "unknown",
                    melanoma_alert=bool(job.melanoma_alert),
                    ranked_codes=tuple(str(entry["code"]) for entry in (job.ranking or [])),
                    resolved_at=alert.resolved_at,
                    conclusion=alert.conclusion,
                    referral=alert.referral,
                    biopsy_result=alert.biopsy_result,
                )
                for alert, job in session.exec(statement).all()
            ]


def erase_patient_alerts(session: Session, chat_ref: str) -> None:
    """/delete: the patient's alerts keep only what the clinic's own audit needs (when each was sent, claimed
    and resolved, by whom): the patient reference, photo and contact are erased, and the alert leaves the
    clinicians' open work (no reminder, no escalation, not in /pending)."""
    session.exec(
        update(ClinicianAlert)
        .where(col(ClinicianAlert.chat_ref) == chat_ref)
        .values(
            chat_ref=ERASED_PATIENT,
            sealed_photo=None,
            sealed_contact=None,
            sent_at=func.coalesce(col(ClinicianAlert.sent_at), utc_now()),
        )
    )
    # A button press refused in their chat names it by its reference: the name goes (the refusal stays).
    session.exec(
        update(ClinicianAction)
        .where(col(ClinicianAction.chat) == patient_chat_label(chat_ref))
        .values(chat=patient_chat_label(ERASED_PATIENT))
    )


def tombstone_alerts(session: Session, cutoff: datetime) -> int:
    """Retention: alerts sent before ``cutoff`` lose the patient reference, photo and contact (as their jobs do);
    returns how many alerts."""
    result = session.exec(
        update(ClinicianAlert)
        .where(col(ClinicianAlert.created_at) < cutoff, col(ClinicianAlert.chat_ref) != ERASED_PATIENT)
        .values(chat_ref=ERASED_PATIENT, sealed_photo=None, sealed_contact=None)
    )
    session.exec(  # and button presses refused in a patient's chat before it lose the chat's reference
        update(ClinicianAction)
        .where(col(ClinicianAction.at) < cutoff, col(ClinicianAction.chat).startswith(REFUSED_IN_PATIENT_CHAT))
        .values(chat=patient_chat_label(ERASED_PATIENT))
    )
    return int(result.rowcount)


def _photo_asked(session: Session, thread_id: uuid.UUID) -> ClinicianAction | None:
    """The latest "Ask for a better photo" press on a thread whose handling finished (recorded as done)."""
    statement = (
        select(ClinicianAction)
        .where(
            ClinicianAction.alert_id == thread_id,
            ClinicianAction.action == ClinicianActionKind.BETTER_PHOTO.value,
            ClinicianAction.outcome == "done",
        )
        .order_by(col(ClinicianAction.at).desc())
    )
    return session.exec(statement).first()


def _risk(value: object) -> RiskLevel | None:
    return None if value is None else RiskLevel(str(value))


def _delivery_key(alert_id: uuid.UUID, chat_id: int, kind: AlertDeliveryKind) -> tuple[Any, ...]:
    return (
        col(ClinicianAlertDelivery.alert_id) == alert_id,
        col(ClinicianAlertDelivery.chat_id) == chat_id,
        col(ClinicianAlertDelivery.kind) == kind,
    )


def unsealed_photo(alert: ClinicianAlert) -> SealedPhoto | None:
    """The alert's photo (file id and media kind), if it still holds one that opens."""
    from shared.sealing import SealBroken, unseal

    if alert.sealed_photo is None:
        return None
    try:
        return unseal(alert.sealed_photo, SealedPhoto)
    except SealBroken:
        log.error("alert %s: the photo's sealed file id cannot be opened (key rotated away?)", alert.id)
        return None


@lru_cache
def get_alert_store() -> AlertStore:
    """The process's alert store, on the configured audit database."""
    from shared.db import get_engine

    return AlertStore(get_engine())
