"""Clinicians acting on alerts, end to end on real parts: patients' photos through the bot, Redis, a Celery
worker and beat, the sandbox Bot API; clinicians pressing buttons and sending commands in their chats.

Clinician chats: 9001 and 9002 (private: the chat is the clinician) and a group chat -1009003 where only user
7001 is a clinician (7002 is another member). 9009 is the lead chat. Reminders and escalation come after a
few seconds here (the settings, shortened, around the clock).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, col, select

from shared import messages
from shared.audit import AlertResolution, AlertState, ClinicianAction, ClinicianAlert, Consent, Job, chat_reference
from skinsense.sandbox import plain_text
from tests.auxil.patient import consent, erase_everything, send_photo_skipping_questions
from tests.auxil.sandbox_user import button_data
from tests.auxil.services import wait_until
from tests.auxil.stack import CHAT_HASH_KEY, RunningStack, running_stack

pytestmark = pytest.mark.e2e

DOCTOR_A, DOCTOR_B = 9001, 9002
GROUP, GROUP_CLINICIAN, GROUP_MEMBER = -1009003, 7001, 7002
LEAD = 9009
CLAIM, NO_ACTION, APPOINTMENT, BETTER_PHOTO = (
    messages.CLINICIAN_BUTTONS[name] for name in ("claim", "no_action", "appointment", "better_photo")
)
REMIND_AFTER_S = 8
ESCALATE_AFTER_S = 16


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("clinicians-stack")
    with running_stack(
        redis_url,
        f"sqlite:///{log_dir / 'audit.sqlite3'}",
        log_dir,
        beat=True,
        clinician_chat_ids=f"{DOCTOR_A},{DOCTOR_B},{GROUP}",
        clinician_user_ids=str(GROUP_CLINICIAN),
        clinician_lead_chat_id=LEAD,
        clinician_working_hours="00:00-24:00",
        clinician_working_days="mon-sun",
        clinician_claim_within_hours=REMIND_AFTER_S / 3600,
        clinician_resolve_within_days=ESCALATE_AFTER_S / 86400,
        clinician_sweep_interval_s=1,
    ) as running:
        yield running


def high_risk_photo(stack: RunningStack, chat: int, photos_by_risk: dict[str, Path], variant: int = 0) -> uuid.UUID:
    """A patient sends a high-risk photo and gets the result; returns its job id. ``variant``: another photo of
    the same spot (mirrored, re-encoded), since the very same photo again only gets its earlier result."""
    data = photos_by_risk["alert"].read_bytes()
    if variant:
        with Image.open(io.BytesIO(data)) as image:
            mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if variant % 2 else image.copy()
            buffer = io.BytesIO()
            mirrored.save(buffer, "JPEG", quality=95 - variant)
            data = buffer.getvalue()
    sent = send_photo_skipping_questions(stack.user, chat, data)
    stack.user.wait_for_reply(chat, sent["message_id"])

    def job() -> Job | None:
        with Session(stack.engine) as session:
            statement = select(Job).where(Job.telegram_file_unique_id == sent["photo"][-1]["file_unique_id"])
            found = session.exec(statement).first()
            return found if found is not None and found.replied_at is not None else None

    answered = wait_until(job, 60, what="the job to be answered")
    assert answered.risk == "high", "a photo of the high-risk spot"
    return answered.id


def alert_message(stack: RunningStack, chat: int, job_id: uuid.UUID, reminder: bool = False) -> dict[str, Any]:
    """The alert with its buttons in a clinician chat (the first one, or the reminder)."""

    def find() -> dict[str, Any] | None:
        for message in stack.user.bot_messages(chat):
            text = message.get("text", "")
            if f"Job: {job_id}" in text and text.startswith("⏰ REMINDER") == reminder:
                return message
        return None

    return wait_until(find, 60, what=f"the alert for {job_id} in chat {chat}")


def current(stack: RunningStack, chat: int, message_id: int) -> dict[str, Any]:
    return next(m for m in stack.user.bot_messages(chat) if m["message_id"] == message_id)


def answer_to(stack: RunningStack, query: dict[str, Any]) -> str:
    """What the bot answered to a press (answerCallbackQuery's text)."""

    def find() -> str | None:
        for call in stack.user.calls("answerCallbackQuery"):
            if str(call["parameters"].get("callback_query_id")) == query["id"]:
                return str(call["parameters"].get("text", ""))
        return None

    return wait_until(find, 30, what="the answer to the press")


def alert_row(stack: RunningStack, job_id: uuid.UUID) -> ClinicianAlert:
    with Session(stack.engine) as session:
        row = session.exec(select(ClinicianAlert).where(ClinicianAlert.job_id == job_id)).one()
        return row


def actions(stack: RunningStack, alert_id: uuid.UUID | None = None) -> list[ClinicianAction]:
    with Session(stack.engine) as session:
        statement = select(ClinicianAction).order_by(col(ClinicianAction.at))
        if alert_id is not None:
            statement = statement.where(ClinicianAction.alert_id == alert_id)
        return list(session.exec(statement).all())


def test_a_lost_answer_to_an_alert_gives_a_resend_marked_as_a_possible_repeat_never_a_silent_duplicate(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """First in this module: the stack's first album (sendMediaGroup is only used for clinician alerts) is the
    first clinician's, executed and its answer lost."""
    stack.user.inject_fault("sendMediaGroup", count=1, kind="drop")
    job_id = high_risk_photo(stack, 3100, photos_by_risk)
    details = {chat: alert_message(stack, chat, job_id) for chat in (DOCTOR_A, DOCTOR_B, GROUP)}

    def albums(chat: int) -> list[dict[str, Any]]:
        return [m for m in stack.user.bot_messages(chat) if m.get("media_group_id") and m.get("caption")]

    assert stack.user.fault_report()["injected"]["sendMediaGroup"]["drop"] == 1
    lost, resent = albums(DOCTOR_A)
    assert messages.POSSIBLY_REPEATED in resent["caption"] and messages.POSSIBLY_REPEATED not in lost["caption"]
    assert details[DOCTOR_A]["reply_to_message"]["message_id"] == resent["message_id"]
    for chat in (DOCTOR_B, GROUP):
        (album,) = albums(chat)
        assert messages.POSSIBLY_REPEATED not in album["caption"]
    for chat in (DOCTOR_A, DOCTOR_B, GROUP):
        texts = [m for m in stack.user.bot_messages(chat) if f"Job: {job_id}" in m.get("text", "")]
        assert len([m for m in texts if not m["text"].startswith(("⏰", "⚠️"))]) == 1, "the details went once"


def test_an_alert_has_its_buttons_and_a_claim_by_one_clinician_shows_in_every_chat(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    job_id = high_risk_photo(stack, 3101, photos_by_risk)
    for_a, for_b = alert_message(stack, DOCTOR_A, job_id), alert_message(stack, DOCTOR_B, job_id)
    for label in (CLAIM, NO_ACTION, APPOINTMENT, BETTER_PHOTO):
        assert button_data(for_b, label) is not None, label
    assert for_a["reply_to_message"]["photo"], "the details sit under the patient's photo"

    query = stack.user.tap(DOCTOR_A, for_a["message_id"], CLAIM)
    assert answer_to(stack, query) == messages.PRESS_CLAIMED
    wait_until(
        lambda: "Being reviewed by Patient 9001" in current(stack, DOCTOR_B, for_b["message_id"])["text"],
        30,
        what="clinician B's copy to show the claim",
    )
    assert button_data(current(stack, DOCTOR_B, for_b["message_id"]), CLAIM) is None, "nobody can claim it twice"
    alert = alert_row(stack, job_id)
    assert alert.state == AlertState.CLAIMED and alert.claimed_by == "Patient 9001" and alert.claimed_at is not None
    (claim,) = actions(stack, alert.id)
    assert (claim.action, claim.chat, claim.user_id, claim.outcome) == ("claim", str(DOCTOR_A), DOCTOR_A, "done")
    assert review_count(stack, "claim") >= 1, "the bot's review-time histogram saw the claim"


def review_count(stack: RunningStack, step: str) -> float:
    """skinsense_clinician_review_seconds_count{step} on the bot's /metrics."""
    port = stack.env["SKINSENSE_BOT_METRICS_PORT"]
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "skinsense_clinician_review_seconds_count" and sample.labels.get("step") == step:
                return sample.value
    return 0.0


def test_a_resolution_is_recorded_with_who_and_when_and_the_patient_is_told_kindly(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3102
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    for_b = alert_message(stack, DOCTOR_B, job_id)
    query = stack.user.tap(DOCTOR_B, for_b["message_id"], APPOINTMENT)
    assert "The patient was sent a message" in answer_to(stack, query)
    told = wait_until(
        lambda: [m for m in stack.user.bot_messages(patient) if "book an appointment" in m.get("text", "")],
        30,
        what="the patient's message",
    )
    assert len(told) == 1
    alert = alert_row(stack, job_id)
    assert (alert.state, alert.resolution, alert.resolved_by) == (
        AlertState.RESOLVED,
        AlertResolution.APPOINTMENT,
        "Patient 9002",
    )
    assert alert.resolved_at is not None and alert.patient_told_at is not None
    assert alert.sealed_contact is None and alert.sealed_photo is None, "resolved: the patient's chat is erased"
    for_a = alert_message(stack, DOCTOR_A, job_id)
    wait_until(
        lambda: "Resolved by Patient 9002" in current(stack, DOCTOR_A, for_a["message_id"])["text"],
        30,
        what="clinician A's copy to show the resolution",
    )
    assert not current(stack, DOCTOR_A, for_a["message_id"]).get("reply_markup"), "no buttons once resolved"
    assert review_count(stack, "resolution") >= 1
    (resolution,) = actions(stack, alert.id)
    assert (resolution.action, resolution.user_id, resolution.outcome) == ("appointment", DOCTOR_B, "done")


def test_presses_from_a_group_member_who_is_not_a_clinician_or_forged_in_a_patient_chat_change_nothing(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3103
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    in_group = alert_message(stack, GROUP, job_id)
    alert = alert_row(stack, job_id)

    refused = stack.user.tap(GROUP, in_group["message_id"], NO_ACTION, from_id=GROUP_MEMBER)
    assert answer_to(stack, refused) == messages.PRESS_REFUSED
    own_chat_message = stack.user.bot_messages(patient)[-1]
    forged = stack.user.forge_callback(patient, own_chat_message["message_id"], f"clin|no_action|{alert.id}")
    assert answer_to(stack, forged) == messages.PRESS_REFUSED
    assert alert_row(stack, job_id).state == AlertState.OPEN, "neither press changed anything"
    recorded = actions(stack, alert.id)
    assert [(a.action, a.outcome) for a in recorded] == [("no_action", "refused"), ("no_action", "refused")]
    assert recorded[1].chat.startswith("ref:") and str(patient) not in recorded[1].chat, "no patient chat id stored"

    claimed = stack.user.tap(GROUP, in_group["message_id"], CLAIM, from_id=GROUP_CLINICIAN)
    assert answer_to(stack, claimed) == messages.PRESS_CLAIMED, "a listed clinician in the group may act"
    assert alert_row(stack, job_id).state == AlertState.CLAIMED


def test_clinician_commands_answer_clinicians_only_and_patients_get_their_help(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    job_id = high_risk_photo(stack, 3104, photos_by_risk)
    alert_message(stack, DOCTOR_A, job_id)

    def reply(chat: int, text: str, from_id: int | None = None) -> str:
        """The bot's answer to a command (quoting it: clinician chats also receive alerts meanwhile)."""
        sent = stack.user.send_text(chat, text, from_id=from_id)
        return str(stack.user.wait_for_reply(chat, sent["message_id"], final=False)["text"])

    def next_message(chat: int, text: str) -> str:
        sent = stack.user.send_text(chat, text)
        later = lambda: [m for m in stack.user.bot_messages(chat) if m["message_id"] > sent["message_id"]]  # noqa: E731
        return str(wait_until(later, 30, what=f"the answer to {text}")[0]["text"])

    pending = reply(DOCTOR_A, "/pending")
    assert "waiting" in pending and str(job_id) in pending
    case = reply(DOCTOR_B, f"/case {job_id}")
    assert f"Job: {job_id}" in case and "Patient: P-" in case and "earlier result" in case
    assert "Median time to claim" in reply(GROUP, "/stats", from_id=GROUP_CLINICIAN)
    assert reply(GROUP, f"/case {job_id}", from_id=GROUP_MEMBER) == messages.COMMAND_REFUSED
    patient = 3199
    consent(stack.user, patient)
    assert next_message(patient, "/pending") == plain_text(messages.help_text(messages.MAX_FILE_MB), None)
    assert next_message(patient, f"/case {job_id}") == plain_text(messages.help_text(messages.MAX_FILE_MB), None)


def test_an_unclaimed_alert_is_sent_again_as_a_reminder_and_an_unresolved_one_goes_to_the_lead(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    job_id = high_risk_photo(stack, 3105, photos_by_risk)
    for chat in (DOCTOR_A, DOCTOR_B, GROUP):
        reminder = alert_message(stack, chat, job_id, reminder=True)
        assert button_data(reminder, CLAIM) is not None, "a reminder can be claimed like the alert"
        original = alert_message(stack, chat, job_id)
        assert reminder["reply_to_message"]["message_id"] == original["message_id"], "it answers the alert it repeats"
    escalated = wait_until(
        lambda: [m for m in stack.user.bot_messages(LEAD) if f"Job: {job_id}" in m.get("text", "")],
        90,
        what="the escalation in the lead chat",
    )
    assert len(escalated) == 1 and escalated[0]["text"].startswith("⚠️ ESCALATED")
    alert = alert_row(stack, job_id)
    assert alert.reminded_at is not None and alert.escalated_at is not None
    # Beat sweeps every second: still one reminder per chat, one escalation.
    for chat in (DOCTOR_A, DOCTOR_B):
        reminders = [
            m
            for m in stack.user.bot_messages(chat)
            if f"Job: {job_id}" in m.get("text", "") and m["text"].startswith("⏰ REMINDER")
        ]
        assert len(reminders) == 1
    query = stack.user.tap(LEAD, escalated[0]["message_id"], NO_ACTION)
    assert answer_to(stack, query).startswith("Recorded"), "the lead can resolve it"


def test_three_high_risk_photos_in_an_hour_from_one_patient_give_one_thread(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3106
    job_ids = [high_risk_photo(stack, patient, photos_by_risk, variant) for variant in range(3)]
    first = alert_message(stack, DOCTOR_A, job_ids[0])
    wait_until(
        lambda: "3 high-risk photos from this patient" in current(stack, DOCTOR_A, first["message_id"])["text"],
        60,
        what="the thread's alert to list three photos",
    )
    with_buttons = [
        m
        for m in stack.user.bot_messages(DOCTOR_A)
        if m.get("reply_markup")
        and any(str(job_id) in m.get("text", "") for job_id in job_ids)
        and not m["text"].startswith(("⏰", "⚠️"))
    ]
    assert [m["message_id"] for m in with_buttons] == [first["message_id"]], "one alert with buttons, not three"
    later_photos = [
        m for m in stack.user.bot_messages(DOCTOR_A) if any(str(j) in m.get("caption", "") for j in job_ids[1:])
    ]
    assert len(later_photos) == 2 and all(
        m["reply_to_message"]["message_id"] == first["message_id"] for m in later_photos
    )
    rows = [alert_row(stack, job_id) for job_id in job_ids]
    assert {row.thread_id for row in rows} == {rows[0].id}


def test_a_patient_whose_consent_does_not_cover_contact_is_not_messaged_and_the_clinician_is_told(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3107
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    with Session(stack.engine) as session:  # as if they had agreed only to a text that did not mention contact
        for row in session.exec(select(Consent).where(Consent.chat_ref == chat_reference(patient, CHAT_HASH_KEY))):
            row.text_version = "2026-01-01"
            session.add(row)
        session.commit()
    before = len(stack.user.bot_messages(patient))
    query = stack.user.tap(DOCTOR_A, alert_message(stack, DOCTOR_A, job_id)["message_id"], BETTER_PHOTO)
    assert answer_to(stack, query) == messages.PRESS_NO_CONSENT.format(
        resolution=messages.RESOLUTION_TEXT["better_photo"]
    )
    assert len(stack.user.bot_messages(patient)) == before, "nothing was sent to the patient"
    assert alert_row(stack, job_id).resolution == AlertResolution.BETTER_PHOTO


def test_a_patient_who_erased_their_data_is_not_messaged_and_the_clinician_is_told_why(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3160
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_message(stack, DOCTOR_A, job_id)
    erase_everything(stack.user, patient, jobs=1)
    before = len(stack.user.bot_messages(patient))
    query = stack.user.tap(DOCTOR_A, alert["message_id"], BETTER_PHOTO)
    assert answer_to(stack, query) == messages.PRESS_PATIENT_ERASED.format(
        resolution=messages.RESOLUTION_TEXT["better_photo"]
    )
    assert len(stack.user.bot_messages(patient)) == before, "nothing was sent to the patient"


def test_a_patient_message_lost_on_the_way_goes_out_when_the_press_is_handled_again(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """The answer to the patient's message is lost (it may or may not have arrived): the press is handled again
    and the patient is told, instead of the clinician reading "can no longer be reached" and the contact being
    erased for good."""
    patient = 3161
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_message(stack, DOCTOR_A, job_id)
    stack.user.inject_fault("sendMessage", count=1, kind="drop")
    stack.user.tap(DOCTOR_A, alert["message_id"], APPOINTMENT)
    wait_until(lambda: alert_row(stack, job_id).patient_told_at is not None, 60, what="the patient told")
    told = [m for m in stack.user.bot_messages(patient) if "book an appointment" in m.get("text", "")]
    assert 1 <= len(told) <= 2, "sent again after the lost answer (the first may have arrived too)"
    row = alert_row(stack, job_id)
    assert row.resolution == AlertResolution.APPOINTMENT and row.sealed_contact is None
    assert [a.outcome for a in actions(stack, row.id)] == ["done"]
