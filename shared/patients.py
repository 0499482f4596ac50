"""What the bot keeps about a patient beyond their jobs: their consent and their remembered age and sex; and
/delete, which erases everything about them. Every row is keyed by the pseudonymous chat reference
(shared.audit.chat_reference), never the chat id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from shared.answers import Sex
from shared.audit import Consent, ConsentDecision, Job, PatientProfile, utc_now
from shared.questionnaire import AgeRange


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
        """ "No thanks": any earlier consent (to an older text) is withdrawn; nothing new is stored."""
        with self._session() as session:
            session.exec(delete(Consent).where(col(Consent.chat_ref) == chat_ref))
            session.commit()

    # Age and sex, remembered for the next photo

    def profile(self, chat_ref: str) -> PatientProfile | None:
        with self._session() as session:
            return session.get(PatientProfile, chat_ref)

    def remember_profile(self, chat_ref: str, age_range: AgeRange | None, sex: Sex | None) -> None:
        with self._session() as session:
            profile = session.get(PatientProfile, chat_ref) or PatientProfile(chat_ref=chat_ref)
            profile.age_range = None if age_range is None else age_range.value
            profile.sex = None if sex is None else sex.value
            profile.updated_at = utc_now()
            session.add(profile)
            session.commit()

    # /delete

    def erase_patient(self, chat_ref: str) -> int:
        """Erase every row about this patient: jobs (with their answers and results), profile and consent.
        Returns how many jobs were erased."""
        with self._session() as session:
            jobs = session.exec(delete(Job).where(col(Job.chat_ref) == chat_ref))
            session.exec(delete(PatientProfile).where(col(PatientProfile.chat_ref) == chat_ref))
            session.exec(delete(Consent).where(col(Consent.chat_ref) == chat_ref))
            session.commit()
            return int(jobs.rowcount)


@lru_cache
def get_patient_store() -> PatientStore:
    """The process's patient store, on the configured audit database."""
    from shared.db import get_engine

    return PatientStore(get_engine())
