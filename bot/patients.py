"""What the bot keeps about a patient beyond their jobs: their consent and their remembered age and sex; and
/history and /delete, which erases everything about them. Every row is keyed by the pseudonymous chat reference
(shared.audit.chat_reference), never the chat id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select, update

from shared.answers import Sex
from shared.audit import Consent, ConsentDecision, Job, JobStatus, PatientProfile, utc_now
from shared.clinic.store import erase_patient_alerts
from shared.outcomes import FailureCode
from shared.questionnaire import AgeRange
from shared.retention import tombstone_values
from shared.spot_followups import erase_patient_followups

HISTORY_LENGTH = 10  # /history lists this many results, newest first
UNFINISHED_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class PatientStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session:
            yield session

    # Consent

    def consent(self, chat_ref: str, text_version: str) -> Consent | None:
        """The patient's consent to this version of the privacy text, if they gave it."""
        with self._session() as session:
            statement = select(Consent).where(Consent.chat_ref == chat_ref, Consent.text_version == text_version)
            return session.exec(statement).first()

    def record_consent(self, chat_ref: str, text_version: str) -> Consent:
        """Explicit consent to ``text_version``, with its time (agreeing twice keeps the first row)."""
        with self._session() as session:
            existing = session.exec(
                select(Consent).where(Consent.chat_ref == chat_ref, Consent.text_version == text_version)
            ).first()
            if existing is not None:
                return existing
            consent = Consent(chat_ref=chat_ref, text_version=text_version, decision=ConsentDecision.AGREED)
            session.add(consent)
            session.commit()
            session.refresh(consent)
            return consent

    def withdraw_consent(self, chat_ref: str) -> None:
        """ "No thanks": any earlier consent (to an older text) is withdrawn; nothing new is stored, and no reminder
        is sent any more (they are erased: a reminder is a message the patient no longer agreed to)."""
        with self._session() as session:
            session.exec(delete(Consent).where(col(Consent.chat_ref) == chat_ref))
            erase_patient_followups(session, chat_ref)
            session.commit()

    # Age and sex, remembered for the next photo

    def profile(self, chat_ref: str) -> PatientProfile | None:
        with self._session() as session:
            return session.get(PatientProfile, chat_ref)

    def remember_profile(self, chat_ref: str, age_range: AgeRange | None, sex: Sex | None) -> bool:
        """Age and sex for the next photo; written only while the patient consents (a questionnaire finished on a
        process that did not see "No thanks" or /delete writes nothing). Whether it was written."""
        with self._session() as session:
            consents = session.exec(select(Consent).where(Consent.chat_ref == chat_ref).limit(1)).first()
            if consents is None:
                return False
            profile = session.get(PatientProfile, chat_ref) or PatientProfile(chat_ref=chat_ref)
            profile.age_range = None if age_range is None else age_range.value
            profile.sex = None if sex is None else sex.value
            profile.updated_at = utc_now()
            session.add(profile)
            session.commit()
            return True

    # /delete

    def erase_patient(self, chat_ref: str) -> int:
        """/delete: erase everything about this patient: profile, consent, and of each job its answers, results
        and photo fingerprint. Each job leaves a tombstone no one can link back to the patient (its id, times
        and outcome: shared/retention.py); one still in progress is closed as ERASED, so that nothing analyses
        or answers it any more. Returns how many jobs were erased."""
        now = utc_now()
        with self._session() as session:
            mine = col(Job.chat_ref) == chat_ref
            session.exec(
                update(Job)
                .where(mine, col(Job.status).in_(UNFINISHED_STATUSES))
                .values(status=JobStatus.FAILED, error_code=FailureCode.ERASED, finished_at=now)
            )
            session.exec(update(Job).where(mine, col(Job.replied_at).is_(None)).values(replied_at=now))
            jobs = session.exec(update(Job).where(mine).values(**tombstone_values()))
            # After the jobs: their updates waited for any change in flight (a result committed with its alert),
            # so this sees every alert of theirs, the photo and contact erased with it.
            erase_patient_alerts(session, chat_ref)
            erase_patient_followups(session, chat_ref)  # reminders, with the earlier photos' file ids
            session.exec(delete(PatientProfile).where(col(PatientProfile.chat_ref) == chat_ref))
            session.exec(delete(Consent).where(col(Consent.chat_ref) == chat_ref))
            session.commit()
            return int(jobs.rowcount)

    def job_count(self, chat_ref: str) -> int:
        """How many jobs (analyses, refusals) are stored about this patient."""
        with self._session() as session:
            return len(session.exec(select(Job.id).where(Job.chat_ref == chat_ref)).all())

    # /history

    def results(self, chat_ref: str, limit: int = HISTORY_LENGTH) -> list[Job]:
        """The patient's answered results (analysed photos), newest first."""
        with self._session() as session:
            statement = (
                select(Job)
                .where(
                    Job.chat_ref == chat_ref,
                    Job.status == JobStatus.DONE,
                    col(Job.replied_at).is_not(None),
                    col(Job.ranking).is_not(None),
                )
                .order_by(col(Job.received_at).desc())
                .limit(limit)
            )
            return list(session.exec(statement).all())

    def result(self, chat_ref: str, job_id: uuid.UUID) -> Job | None:
        """One of this patient's results (None if it is not theirs, or erased)."""
        with self._session() as session:
            job = session.get(Job, job_id)
        if job is None or job.chat_ref != chat_ref or job.status != JobStatus.DONE or job.ranking is None:
            return None
        return job
