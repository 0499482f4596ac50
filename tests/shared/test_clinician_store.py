"""The alert store's side of the clinicians' commands and refusals, on a migrated audit database (SQLite and
PostgreSQL): /case by the start of a job id (ambiguity refused), "Ask for a better photo" leaving the alert
unresolved, refused presses recorded without attacker text or an unconsented patient's reference, and who the
allow-list accepts in private and group chats."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.audit import (
    AlertResolution,
    AlertState,
    ClinicianAlert,
    Consent,
    ConsentDecision,
    Job,
    JobStatus,
    MediaKind,
)
from shared.clinic.buttons import ClinicianAllowList
from shared.clinic.store import AlertStore
from shared.clinic.views import NO_CONSENT_REF, case_ref_digits, patient_chat_label
from shared.labels import RiskLevel


def alert_for(engine: Engine, job_id: uuid.UUID, chat_ref: str = "a" * 32) -> ClinicianAlert:
    """A finished high-risk job and its alert (a thread of its own)."""
    with Session(engine, expire_on_commit=False) as session:
        session.add(
            Job(
                id=job_id,
                chat_ref=chat_ref,
                media_kind=MediaKind.PHOTO,
                status=JobStatus.DONE,
                risk=RiskLevel.HIGH,
                ranking=[{"code": "mel", "name": "Melanoma", "probability": 0.7}],
                melanoma_alert=True,
            )
        )
        alert = ClinicianAlert(job_id=job_id, chat_ref=chat_ref, thread_id=uuid.uuid4())
        alert.thread_id = alert.id
        session.add(alert)
        session.commit()
        return alert


def test_a_case_is_found_by_the_start_of_its_job_id_and_an_ambiguous_start_is_refused(audit_engine: Engine) -> None:
    store = AlertStore(audit_engine)
    first = uuid.UUID("81da1f41-0000-4000-8000-000000000001")
    twin = uuid.UUID("81da1f41-7000-4000-8000-000000000002")  # the same first 8 digits
    other = uuid.UUID("0badcafe-0000-4000-8000-000000000003")
    alerts = {job_id: alert_for(audit_engine, job_id) for job_id in (first, twin, other)}

    assert [a.id for a in store.for_case_ref("0badcafe")] == [alerts[other].id]
    assert [a.id for a in store.for_case_ref(str(other))] == [alerts[other].id], "the whole job id, typed"
    assert [a.id for a in store.for_case_ref("0BADCA")] == [alerts[other].id], "case does not matter"
    assert len(store.for_case_ref("81da1f41")) == 2, "ambiguous: both found, the caller refuses"
    assert [a.id for a in store.for_case_ref("81da1f417")] == [alerts[twin].id]
    assert store.for_case_ref("deadbeef") == []
    assert store.case_ref(other) == "0badcafe"
    assert store.case_ref(first) == "81da1f410000", "longer where 8 digits name two alerts"
    assert [a.id for a in store.for_case_ref(store.case_ref(first))] == [alerts[first].id]
    assert case_ref_digits("81da") is None and case_ref_digits("81da1f4x") is None and case_ref_digits("") is None

    (pending_other, *_) = [c for c in store.pending_cases() if c.alert.id == alerts[other].id]
    assert pending_other.case_ref == "0badcafe" and pending_other.risk == RiskLevel.HIGH
    assert pending_other.ranking is not None and pending_other.ranking[0]["name"] == "Melanoma"


def test_asking_for_a_better_photo_leaves_the_alert_unresolved_until_a_clinician_resolves_it(
    audit_engine: Engine,
) -> None:
    store = AlertStore(audit_engine)
    alert = alert_for(audit_engine, uuid.uuid4())
    asked = store.ask_for_photo(alert.id, "Dr A")
    assert asked is not None and asked.changed
    assert (asked.alert.state, asked.alert.claimed_by, asked.alert.resolved_at) == (
        AlertState.AWAITING_PHOTO,
        "Dr A",
        None,
    )
    assert not store.photo_asked_recorded(alert.id)
    store.record_action(
        alert_id=alert.id, action="better_photo", chat="9001", user_id=9001, user_name="Dr A", outcome="done"
    )
    assert store.photo_asked_recorded(alert.id)
    view = store.view(alert.id)
    assert view is not None and (view.state, view.photo_asked_by) == (AlertState.AWAITING_PHOTO, "Dr A")
    assert view.photo_asked_at is not None and view.patient_told_at is None
    again = store.ask_for_photo(alert.id, "Dr B")
    assert again is not None and not again.changed, "asked once"
    assert [a.id for a in store.pending()] == [alert.id], "still open work"
    assert store.claim(alert.id, "Dr B") is not None and store.load(alert.id).state == AlertState.AWAITING_PHOTO  # type: ignore[union-attr]
    resolved = store.resolve(alert.id, AlertResolution.APPOINTMENT, "Dr B")
    assert resolved is not None and resolved.changed and resolved.alert.state == AlertState.RESOLVED
    assert store.pending() == []
    late = store.ask_for_photo(alert.id, "Dr A")
    assert late is not None and not late.changed and late.alert.state == AlertState.RESOLVED


def test_a_refused_press_records_a_known_action_and_names_a_patient_chat_only_if_it_consented(
    audit_engine: Engine,
) -> None:
    store = AlertStore(audit_engine)
    alert = alert_for(audit_engine, uuid.uuid4())
    never, consented = "b" * 32, "c" * 32
    with Session(audit_engine) as session:
        session.add(Consent(chat_ref=consented, text_version="v1", decision=ConsentDecision.AGREED))
        session.commit()

    unconsented = store.record_refusal(
        alert_id=uuid.uuid4(), action="unknown", clinician_chat_id=None, patient_chat_ref=never, user_id=5555
    )
    assert unconsented.chat == patient_chat_label(NO_CONSENT_REF) and never not in unconsented.chat
    assert unconsented.alert_id is None, "an alert id that names no alert is not kept"
    assert unconsented.user_id is None, "a patient's Telegram id is never stored"
    known = store.record_refusal(
        alert_id=alert.id, action="no_action", clinician_chat_id=None, patient_chat_ref=consented, user_id=None
    )
    assert (known.chat, known.alert_id, known.outcome) == (patient_chat_label(consented), alert.id, "refused")
    in_group = store.record_refusal(
        alert_id=None, action="/case", clinician_chat_id=-1009003, patient_chat_ref=None, user_id=7002
    )
    assert (in_group.chat, in_group.user_id) == ("-1009003", 7002)


def test_in_a_group_only_listed_users_count_and_in_a_private_chat_only_its_own_user() -> None:
    allow = ClinicianAllowList(chat_ids=frozenset({9001, -1009003}), user_ids=frozenset({7001}))
    assert allow.allows(9001, 9001, private=True)
    assert not allow.allows(9001, 9002, private=True)
    assert allow.allows(-1009003, 7001, private=False)
    assert not allow.allows(-1009003, 7002, private=False)
    assert not allow.allows(-1009003, -1009003, private=False), "a sender whose id is the group's is not a clinician"
    # A clinician chat id that is a group (or a chat type other than private): its id as a user counts for nothing.
    assert not allow.allows(9001, 9001, private=False)
    assert not allow.allows(1234, 7001, private=False), "not a clinician chat"
