"""Retention: patient data past the retention period is erased; each job leaves a tombstone.

A tombstone keeps what says that the system ran and how, and nothing about the patient: the job id, its times,
status, outcome code, media kind, model version, risk level and alert flag, and how many delivery attempts it
took. Erased: the chat reference, Telegram's file id, the image fingerprint, the rankings, the answers, which
of them were used and how they moved the risk, the skin tone estimated around the lesion (and whether it raised
the risk), the refusal's free text, which clinicians were told and any delivery data left (sealed chat and file
ids; normally erased when the patient was answered). Consent and remembered age/sex rows older than the retention
are deleted (the patient is asked again on their next message).
``skinsense audit purge`` and the workers' daily beat task (``worker.tasks.purge_expired``) both call
:func:`purge_patient_data`; it is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import null
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, update

from shared.audit import Consent, Job, PatientProfile, utc_now
from shared.clinic.store import tombstone_alerts
from shared.spot_followups import purge_followups

# What a tombstone's chat reference reads: no chat can hash to it (references are 32 hex digits).
PURGED_CHAT_REF = "purged"
# The EU AI Act (Art. 19, 26(6)) keeps logs of high-risk systems at least six months.
MINIMUM_RETENTION_DAYS = 183


@dataclass(frozen=True)
class PurgeCounts:
    jobs_tombstoned: int
    consents_deleted: int
    profiles_deleted: int
    reminders_deleted: int = 0


def tombstone_values() -> dict[str, Any]:
    """What a job row becomes when its patient data is erased (here, and by /delete: bot/patients.py)."""
    # null(): SQL NULL, also in the JSON columns (None would store the JSON text 'null').
    return {
        "chat_ref": PURGED_CHAT_REF,
        "telegram_file_unique_id": null(),
        "image_sha256": null(),
        "error_reason": null(),
        "ranking": null(),
        "photo_ranking": null(),
        "answers": null(),
        "answers_used": null(),
        "answer_effects": null(),
        "same_photo_as": null(),
        "same_spot_as": null(),
        "spot_change": null(),
        # Skin tone is the patient's (it can hint at their origin): erased, the caveat and what it did with it.
        "skin_tone_ita": null(),
        "skin_tone_caveat": null(),
        "raised_by_skin_tone": null(),
        "album_id": null(),
        "album_position": null(),
        "clinicians_notified": null(),
        "delivery": null(),
        "due_at": null(),  # nothing left to deliver: the reconciler lets it be
    }


def retention_cutoff(older_than_days: int, now: datetime | None = None) -> datetime:
    return (now or utc_now()) - timedelta(days=older_than_days)


def purge_patient_data(engine: Engine, *, older_than_days: int, now: datetime | None = None) -> PurgeCounts:
    """Erase the patient data of jobs received, consents given and profiles updated before the cutoff."""
    cutoff = retention_cutoff(older_than_days, now)
    with Session(engine) as session:
        jobs = session.exec(
            update(Job)
            .where(col(Job.received_at) < cutoff, col(Job.chat_ref) != PURGED_CHAT_REF)
            .values(**tombstone_values())
        )
        tombstone_alerts(session, cutoff)  # their clinician alerts likewise (shared/clinic/store.py)
        consents = session.exec(delete(Consent).where(col(Consent.decided_at) < cutoff))
        profiles = session.exec(delete(PatientProfile).where(col(PatientProfile.updated_at) < cutoff))
        reminders = purge_followups(session, cutoff)
        session.commit()
        return PurgeCounts(
            jobs_tombstoned=jobs.rowcount,
            consents_deleted=consents.rowcount,
            profiles_deleted=profiles.rowcount,
            reminders_deleted=reminders,
        )
