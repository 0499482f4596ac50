"""Reminders to photograph a spot again (shared/spot_followups.py), on both databases: one per result, due after
the risk's delay, claimed once by whichever sweep gets it, found by the reply to its message, stopped by the
patient, erased by /delete and the retention purge; what it holds (the chat, the earlier photo's file id) sealed."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared.audit import SpotFollowup, utc_now
from shared.labels import RiskLevel
from shared.retention import purge_patient_data
from shared.spot_followups import FollowupContact, SpotFollowupStore, erase_patient_followups, reminder_delay

PATIENT, OTHER = "patient-ref", "other-ref"
CONTACT = FollowupContact(chat_id=4321, file_id="earlier-file-id")


def test_reminders_are_due_after_the_risks_delay_and_none_for_high() -> None:
    delays = {"after_low_days": 90, "after_medium_days": 28}
    assert reminder_delay(RiskLevel.LOW, **delays) == timedelta(days=90)
    assert reminder_delay(RiskLevel.MEDIUM, **delays) == timedelta(days=28)
    assert reminder_delay(RiskLevel.HIGH, **delays) is None, "the clinicians follow a HIGH result up"


def test_a_due_reminder_is_claimed_once_then_found_by_the_reply_to_it(audit_engine: Engine) -> None:
    store, rival = SpotFollowupStore(audit_engine), SpotFollowupStore(audit_engine)
    job = uuid.uuid4()
    later = store.create(PATIENT, uuid.uuid4(), CONTACT, utc_now() + timedelta(days=1))
    first = store.create(PATIENT, job, CONTACT, utc_now() + timedelta(days=1))
    again = store.create(PATIENT, job, CONTACT, utc_now() - timedelta(seconds=1))  # asked twice: the last counts
    assert [f.id for f in store.active(PATIENT)] == [again.id, later.id]
    assert first.id not in {f.id for f in store.active(PATIENT)}
    with Session(audit_engine) as session:
        sealed = session.exec(select(SpotFollowup.sealed)).all()
    assert not any("4321" in value or "earlier-file-id" in value for value in sealed), "sealed at rest"

    (due,) = store.claim_due()
    assert due.followup.id == again.id and due.contact == CONTACT
    assert rival.claim_due() == [], "claimed once: a second sweep gets nothing"
    store.release(again.id)
    (retried,) = rival.claim_due()
    assert retried.followup.id == again.id, "a send that failed is tried again by the next sweep"
    rival.reminded(again.id, message_id=77)
    assert store.claim_due() == [], "sent: never again"
    assert store.for_reply(OTHER, 77) is None, "another chat's reply finds nothing"
    found = store.for_reply(PATIENT, 77)
    assert found is not None and found.followup.job_id == job
    store.answered(again.id)
    assert store.for_reply(PATIENT, 77) is None and [f.id for f in store.active(PATIENT)] == [later.id]


def test_the_patient_stops_reminders_and_delete_and_retention_erase_them(audit_engine: Engine) -> None:
    store = SpotFollowupStore(audit_engine)
    mine = store.create(PATIENT, uuid.uuid4(), CONTACT, utc_now() - timedelta(seconds=1))
    theirs = store.create(OTHER, uuid.uuid4(), CONTACT, utc_now() - timedelta(seconds=1))
    assert store.stop(OTHER, mine.id) == 0, "only the patient's own"
    assert store.stop(PATIENT, mine.id) == 1 and store.active(PATIENT) == []
    assert [d.followup.id for d in store.claim_due()] == [theirs.id], "a stopped reminder is never sent"
    store.create(PATIENT, uuid.uuid4(), CONTACT, utc_now() + timedelta(days=1))
    with Session(audit_engine) as session:
        assert erase_patient_followups(session, PATIENT) == 2
        session.commit()
    assert (
        purge_patient_data(audit_engine, older_than_days=200, now=utc_now() + timedelta(days=201)).reminders_deleted
        == 1
    )
    with Session(audit_engine) as session:
        assert session.exec(select(SpotFollowup)).all() == []
