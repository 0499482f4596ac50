"""Clinicians acting on alerts, end to end on real parts: patients' photos through the bot, Redis, a Celery
worker and beat, the sandbox Bot API; clinicians pressing buttons and sending commands in their chats.

Clinician chats: 9001 and 9002 (private: the chat is the clinician) and a group chat -1009003 where only user
7001 is a clinician (7002 is another member). 9009 is the lead chat. Reminders and escalation come after a
few seconds here (the settings, shortened, around the clock).
"""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, col, select

from shared.audit import AlertResolution, AlertState, ClinicianAction, ClinicianAlert, Consent, Job, chat_reference
from shared.clinic.views import NO_CONSENT_REF, patient_chat_label
from shared.texts import clinician as clinician_texts
from shared.texts import patient as patient_texts
from skinsense.sandbox import plain_text
from tests.auxil.patient import consent, erase_everything, send_photo_skipping_questions
from tests.auxil.sandbox_user import button_data
from tests.auxil.services import python_command, wait_until
from tests.auxil.stack import CHAT_HASH_KEY, RunningStack, running_stack

pytestmark = pytest.mark.e2e
RUNS_LONG = True  # tests/conftest.py: started first

DOCTOR_A, DOCTOR_B = 9001, 9002
GROUP, GROUP_CLINICIAN, GROUP_MEMBER = -1009003, 7001, 7002
LEAD = 9009
CLAIM, NO_ACTION, APPOINTMENT, BETTER_PHOTO, WRITE = (
    clinician_texts.CLINICIAN_BUTTONS[name] for name in ("claim", "no_action", "appointment", "better_photo", "write")
)
CONFIRM, CANCEL = (clinician_texts.CLINICIAN_CONFIRM_BUTTONS[name] for name in ("confirm_no_action", "cancel"))
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
    """What the bot answered to a press (answerCallbackQuery's text, as the sandbox recorded it)."""
    return str(stack.user.wait_for_answer(query)["text"] or "")


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
    assert (
        clinician_texts.POSSIBLY_REPEATED in resent["caption"]
        and clinician_texts.POSSIBLY_REPEATED not in lost["caption"]
    )
    assert details[DOCTOR_A]["reply_to_message"]["message_id"] == resent["message_id"]
    for chat in (DOCTOR_B, GROUP):
        (album,) = albums(chat)
        assert clinician_texts.POSSIBLY_REPEATED not in album["caption"]
    for chat in (DOCTOR_A, DOCTOR_B, GROUP):
        texts = [m for m in stack.user.bot_messages(chat) if f"Job: {job_id}" in m.get("text", "")]
        assert len([m for m in texts if not m["text"].startswith(("⏰", "⚠️"))]) == 1, "the details went once"


def test_an_alert_has_its_buttons_and_a_claim_by_one_clinician_shows_in_every_chat(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    job_id = high_risk_photo(stack, 3101, photos_by_risk)
    for_a, for_b = alert_message(stack, DOCTOR_A, job_id), alert_message(stack, DOCTOR_B, job_id)
    for label in (CLAIM, NO_ACTION, APPOINTMENT, BETTER_PHOTO, WRITE):
        assert button_data(for_b, label) is not None, label
    assert for_a["reply_to_message"]["photo"], "the details sit under the patient's photo"

    query = stack.user.tap(DOCTOR_A, for_a["message_id"], CLAIM)
    assert answer_to(stack, query) == clinician_texts.PRESS_CLAIMED
    wait_until(
        lambda: "Being reviewed by Dr 9001" in current(stack, DOCTOR_B, for_b["message_id"])["text"],
        30,
        what="clinician B's copy to show the claim",
    )
    assert button_data(current(stack, DOCTOR_B, for_b["message_id"]), CLAIM) is None, "nobody can claim it twice"
    alert = alert_row(stack, job_id)
    assert alert.state == AlertState.CLAIMED and alert.claimed_by == "Dr 9001" and alert.claimed_at is not None
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
        "Dr 9002",
    )
    assert alert.resolved_at is not None and alert.patient_told_at is not None
    assert alert.sealed_contact is None and alert.sealed_photo is None, "resolved: the patient's chat is erased"
    for_a = alert_message(stack, DOCTOR_A, job_id)
    wait_until(
        lambda: "Resolved by Dr 9002" in current(stack, DOCTOR_A, for_a["message_id"])["text"],
        30,
        what="clinician A's copy to show the resolution",
    )
    resolved = current(stack, DOCTOR_A, for_a["message_id"])
    assert set(buttons(resolved)) == set(clinician_texts.CONCLUSION_BUTTONS.values()), "only the outcome question"
    assert review_count(stack, "resolution") >= 1
    (resolution,) = actions(stack, alert.id)
    assert (resolution.action, resolution.user_id, resolution.outcome) == ("appointment", DOCTOR_B, "done")


def test_a_clinician_records_what_they_concluded_and_later_the_biopsy_and_audit_performance_shows_them(
    stack: RunningStack, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    """Closing the loop: the conclusion and the referral with buttons once the alert is resolved (not before), the
    biopsy's result with /case, all with who and when; `skinsense audit performance` reports them."""
    job_id = high_risk_photo(stack, 3150, photos_by_risk)
    for_a, for_b = alert_message(stack, DOCTOR_A, job_id), alert_message(stack, DOCTOR_B, job_id)
    melanoma = clinician_texts.CONCLUSION_BUTTONS["mel"]
    assert button_data(for_a, melanoma) is None, "no conclusion before the alert is resolved"
    forged = stack.user.forge_callback(
        DOCTOR_A, for_a["message_id"], f"clin|conclude|{alert_row(stack, job_id).id}|mel"
    )
    assert answer_to(stack, forged) == clinician_texts.PRESS_NOT_RESOLVED
    assert alert_row(stack, job_id).conclusion is None

    stack.user.tap(DOCTOR_A, for_a["message_id"], APPOINTMENT)
    wait_until(lambda: button_data(current(stack, DOCTOR_A, for_a["message_id"]), melanoma), 30, what="the question")
    query = stack.user.tap(DOCTOR_A, for_a["message_id"], melanoma)
    assert answer_to(stack, query) == clinician_texts.PRESS_CONCLUDED.format(finding="Melanoma")
    biopsy = clinician_texts.REFERRAL_BUTTONS["biopsy"]
    wait_until(lambda: button_data(current(stack, DOCTOR_B, for_b["message_id"]), biopsy), 30, what="the referral")
    query = stack.user.tap(DOCTOR_B, for_b["message_id"], biopsy)
    assert str(job_id)[:8] in answer_to(stack, query), "it says how to send the biopsy's result"
    wait_until(
        lambda: (
            "Concluded: Melanoma (Dr 9001); referred for a biopsy"
            in current(stack, DOCTOR_A, for_a["message_id"])["text"]
        ),
        30,
        what="clinician A's copy to show the outcome",
    )
    assert not buttons(current(stack, DOCTOR_A, for_a["message_id"])), "nothing left to ask"

    assert command_reply(stack, DOCTOR_B, f"/case {str(job_id)[:8]} biopsy grows")["text"].startswith("Send /case")
    reply = command_reply(stack, DOCTOR_B, f"/case {str(job_id)[:8]} biopsy Melanoma")
    assert reply["text"] == clinician_texts.CASE_BIOPSY_RECORDED.format(job=str(job_id)[:8], finding="Melanoma")
    alert = alert_row(stack, job_id)
    assert (alert.conclusion, alert.concluded_by, alert.referral, alert.referred_by) == (
        "mel",
        "Dr 9001",
        "biopsy",
        "Dr 9002",
    )
    assert (alert.biopsy_result, alert.biopsy_by) == ("mel", "Dr 9002") and alert.biopsy_at is not None
    trail = [(a.action, a.user_id, a.outcome, a.detail) for a in actions(stack, alert.id)]
    assert trail == [
        ("conclude", DOCTOR_A, "too_early", "mel"),
        ("appointment", DOCTOR_A, "done", None),
        ("conclude", DOCTOR_A, "done", "mel"),
        ("refer", DOCTOR_B, "done", "biopsy"),
        ("biopsy", DOCTOR_B, "done", "mel"),
    ]

    env = {**stack.env, "SKINSENSE_DATABASE_URL": stack.database_url}
    report = subprocess.run(
        python_command("-m", "skinsense.cli", "audit", "performance"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    one_of_one = "1 of 1 = 100% (21%-100%)"
    assert f"confirmed suspicious (cancer or pre-cancer concluded, or biopsy): {one_of_one}" in report, report
    assert f"biopsy found cancer or pre-cancer (PPV of an alert): {one_of_one}" in report, report
    assert "Sensitivity cannot be read from alerts" in report


def test_presses_from_a_group_member_who_is_not_a_clinician_or_forged_in_a_patient_chat_change_nothing(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3103
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    in_group = alert_message(stack, GROUP, job_id)
    alert = alert_row(stack, job_id)

    refused = stack.user.tap(GROUP, in_group["message_id"], NO_ACTION, from_id=GROUP_MEMBER)
    assert answer_to(stack, refused) == clinician_texts.PRESS_REFUSED
    own_chat_message = stack.user.bot_messages(patient)[-1]
    forged = stack.user.forge_callback(patient, own_chat_message["message_id"], f"clin|no_action|{alert.id}")
    assert answer_to(stack, forged) == clinician_texts.PRESS_REFUSED
    assert alert_row(stack, job_id).state == AlertState.OPEN, "neither press changed anything"
    recorded = actions(stack, alert.id)
    assert [(a.action, a.outcome) for a in recorded] == [("no_action", "refused"), ("no_action", "refused")]
    assert recorded[1].chat.startswith("ref:") and str(patient) not in recorded[1].chat, "no patient chat id stored"

    claimed = stack.user.tap(GROUP, in_group["message_id"], CLAIM, from_id=GROUP_CLINICIAN)
    assert answer_to(stack, claimed) == clinician_texts.PRESS_CLAIMED, "a listed clinician in the group may act"
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
    assert "waiting" in pending and f"/case_{job_id.hex[:8]}" in pending
    case = str(case_reply(stack, DOCTOR_B, f"/case {job_id}")["text"])
    assert f"Job: {job_id}" in case and "Patient: P-" in case and "earlier result" in case
    assert "Median time to claim" in reply(GROUP, "/stats", from_id=GROUP_CLINICIAN)
    assert reply(GROUP, f"/case {job_id}", from_id=GROUP_MEMBER) == clinician_texts.COMMAND_REFUSED
    patient = 3199
    consent(stack.user, patient)
    assert next_message(patient, "/pending") == plain_text(patient_texts.help_text(patient_texts.MAX_FILE_MB), None)
    assert next_message(patient, f"/case {job_id}") == plain_text(
        patient_texts.help_text(patient_texts.MAX_FILE_MB), None
    )


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
    assert answer_to(stack, query) == clinician_texts.PRESS_CONFIRM_NO_ACTION, "a melanoma alert: asked first"
    confirm = stack.user.wait_for_button(LEAD, CONFIRM, after_id=escalated[0]["message_id"] - 1)
    query = stack.user.tap(LEAD, confirm["message_id"], CONFIRM)
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
    assert answer_to(stack, query) == clinician_texts.PRESS_NO_CONSENT.format(
        resolution=clinician_texts.RESOLUTION_TEXT["better_photo"]
    )
    assert len(stack.user.bot_messages(patient)) == before, "nothing was sent to the patient"
    asked = alert_row(stack, job_id)
    assert (asked.state, asked.resolution) == (AlertState.AWAITING_PHOTO, None), "asked for, not resolved"


def test_a_patient_who_erased_their_data_is_not_messaged_and_the_clinician_is_told_why(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3160
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_message(stack, DOCTOR_A, job_id)
    erase_everything(stack.user, patient, jobs=1)
    before = len(stack.user.bot_messages(patient))
    query = stack.user.tap(DOCTOR_A, alert["message_id"], BETTER_PHOTO)
    assert answer_to(stack, query) == clinician_texts.PRESS_PATIENT_ERASED.format(
        resolution=clinician_texts.RESOLUTION_TEXT["better_photo"]
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
    # The press's audit row is written when its handling ends, after the patient was told: waited for, not raced.
    outcomes = wait_until(lambda: [a.outcome for a in actions(stack, row.id)] or None, 30, what="the press's audit row")
    assert outcomes == ["done"]


def bot_metric(stack: RunningStack, name: str, **labels: str) -> float:
    """A sample's value on the bot's /metrics (0 when absent)."""
    port = stack.env["SKINSENSE_BOT_METRICS_PORT"]
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def command_reply(stack: RunningStack, chat: int, text: str, from_id: int | None = None) -> dict[str, Any]:
    """The bot's first answer to a command (quoting it: clinician chats also receive alerts meanwhile)."""
    sent = stack.user.send_text(chat, text, from_id=from_id)
    return stack.user.wait_for_reply(chat, sent["message_id"], final=False)


def case_reply(stack: RunningStack, chat: int, text: str) -> dict[str, Any]:
    """/case's alert text: under the patient's photo (which answers the command) while the alert holds the photo."""
    first = command_reply(stack, chat, text)
    return first if "photo" not in first else stack.user.wait_for_reply(chat, first["message_id"], final=False)


def case_command(pending: str, job_id: uuid.UUID) -> str:
    """The tappable /case_<start of the job id> that /pending gives for this job."""
    commands = [word for word in pending.split() if word.startswith("/case_")]
    (command,) = [c for c in commands if job_id.hex.startswith(c.removeprefix("/case_"))]
    return command


def buttons(message: dict[str, Any]) -> list[str]:
    return [b["text"] for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


def test_pending_gives_a_tappable_case_command_per_alert_and_case_shows_it_as_it_is_now_with_photo_and_buttons(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    job_id = high_risk_photo(stack, 3170, photos_by_risk)
    for_a = alert_message(stack, DOCTOR_A, job_id)
    pending = str(command_reply(stack, DOCTOR_B, "/pending")["text"])
    command = case_command(pending, job_id)
    (row,) = [line for line in pending.split("\n• ") if command in line]
    assert "HIGH risk" in row and "most likely" in row and "open, not claimed" in row, row

    sent = stack.user.send_text(DOCTOR_B, command)  # what tapping it sends
    photo = stack.user.wait_for_reply(DOCTOR_B, sent["message_id"], final=False)
    assert photo.get("photo"), "the patient's photo, as the alert has it"
    case = stack.user.wait_for_reply(DOCTOR_B, photo["message_id"], final=False)
    assert f"Job: {job_id}" in case["text"] and "Open: nobody has claimed it yet" in case["text"]
    assert {CLAIM, NO_ACTION, APPOINTMENT, BETTER_PHOTO, WRITE} <= set(buttons(case)), "act from /case"

    claimed = stack.user.tap(DOCTOR_B, case["message_id"], CLAIM)
    assert answer_to(stack, claimed) == clinician_texts.PRESS_CLAIMED

    def shows_claim() -> bool:
        copies = (current(stack, DOCTOR_B, case["message_id"]), current(stack, DOCTOR_A, for_a["message_id"]))
        return all("Being reviewed by Dr 9002" in copy["text"] for copy in copies)

    wait_until(shows_claim, 30, what="the claim shown in the alert and in /case")
    resolved = stack.user.tap(DOCTOR_A, for_a["message_id"], APPOINTMENT)
    assert answer_to(stack, resolved).startswith("Recorded")
    wait_until(
        lambda: "Resolved by Dr 9001" in current(stack, DOCTOR_B, case["message_id"])["text"],
        30,
        what="the /case copy to follow a resolution made elsewhere",
    )
    resolved_buttons = set(buttons(current(stack, DOCTOR_B, case["message_id"])))
    assert resolved_buttons == set(clinician_texts.CONCLUSION_BUTTONS.values()), (
        "only the outcome question once resolved"
    )

    typed = command_reply(stack, DOCTOR_A, f"/case {job_id}")  # typed by hand, the whole id: still works
    assert "Resolved by Dr 9001" in typed["text"], "the state now, not when it was sent"
    assert set(buttons(typed)) == set(clinician_texts.CONCLUSION_BUTTONS.values()), "and the question it asks now"
    assert command_reply(stack, DOCTOR_A, "/case 81da")["text"] == clinician_texts.CASE_USAGE


def test_asking_for_a_better_photo_leaves_the_alert_waiting_and_no_action_on_a_melanoma_alert_is_confirmed_first(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3171
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    for_a, for_b = alert_message(stack, DOCTOR_A, job_id), alert_message(stack, DOCTOR_B, job_id)
    asked = stack.user.tap(DOCTOR_A, for_a["message_id"], BETTER_PHOTO)
    assert "The patient was sent a message" in answer_to(stack, asked)
    wait_until(
        lambda: [m for m in stack.user.bot_messages(patient) if "clearer photo" in m.get("text", "")],
        30,
        what="the patient asked for a better photo",
    )
    row = alert_row(stack, job_id)
    assert (row.state, row.resolved_at, row.resolution, row.claimed_by) == (
        AlertState.AWAITING_PHOTO,
        None,
        None,
        "Dr 9001",
    ), "not resolved: waiting for the photo"
    assert row.sealed_contact is not None, "still open work: the patient can still be told"
    wait_until(
        lambda: "Waiting for the better photo" in current(stack, DOCTOR_B, for_b["message_id"])["text"],
        30,
        what="every copy to show it waits for the photo",
    )
    assert buttons(current(stack, DOCTOR_B, for_b["message_id"])) == [NO_ACTION, APPOINTMENT, WRITE]
    pending = str(command_reply(stack, DOCTOR_B, "/pending")["text"])
    (line,) = [line for line in pending.split("\n• ") if case_command(pending, job_id) in line]
    assert "waiting for a better photo" in line

    # "Reviewed: no action needed" on a melanoma alert: asked first, in the chat that pressed; Cancel undoes it.
    first = stack.user.tap(DOCTOR_B, for_b["message_id"], NO_ACTION)
    assert answer_to(stack, first) == clinician_texts.PRESS_CONFIRM_NO_ACTION
    wait_until(lambda: buttons(current(stack, DOCTOR_B, for_b["message_id"])) == [CONFIRM, CANCEL], 30, what="confirm")
    assert buttons(current(stack, DOCTOR_A, for_a["message_id"])) == [NO_ACTION, APPOINTMENT, WRITE], (
        "only where pressed"
    )
    assert alert_row(stack, job_id).state == AlertState.AWAITING_PHOTO, "one tap closes nothing"
    cancelled = stack.user.tap(DOCTOR_B, for_b["message_id"], CANCEL)
    assert answer_to(stack, cancelled) == clinician_texts.PRESS_CANCELLED
    wait_until(
        lambda: buttons(current(stack, DOCTOR_B, for_b["message_id"])) == [NO_ACTION, APPOINTMENT, WRITE],
        30,
        what="undone",
    )
    stack.user.tap(DOCTOR_B, for_b["message_id"], NO_ACTION)
    wait_until(lambda: CONFIRM in buttons(current(stack, DOCTOR_B, for_b["message_id"])), 30, what="asked again")
    confirmed = stack.user.tap(DOCTOR_B, for_b["message_id"], CONFIRM)
    assert answer_to(stack, confirmed) == clinician_texts.PRESS_RESOLVED.format(
        resolution=clinician_texts.RESOLUTION_TEXT["no_action"]
    )
    row = alert_row(stack, job_id)
    assert (row.state, row.resolution, row.resolved_by) == (AlertState.RESOLVED, AlertResolution.NO_ACTION, "Dr 9002")
    outcomes = [(a.action, a.outcome) for a in actions(stack, row.id)]
    assert outcomes == [
        ("better_photo", "done"),
        ("no_action", "confirmation_asked"),
        ("cancel", "cancelled"),
        ("no_action", "confirmation_asked"),
        ("confirm_no_action", "done"),
    ]


def test_a_burst_of_forged_presses_from_patient_chats_is_counted_but_writes_one_audit_row_per_chat(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """Issue 22.4: copied clinician presses from a patient's chat flooded the audit with attacker-chosen text,
    and a chat that never consented had its reference stored."""
    patient, stranger = 3172, 3173
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_row(stack, job_id)
    stack.user.send_text(stranger, "/start")  # never consents: only the bot's welcome to press under
    welcome = wait_until(lambda: stack.user.bot_messages(stranger), 30, what="the stranger's welcome")[0]
    own = stack.user.bot_messages(patient)[-1]
    before = {a.id for a in actions(stack)}
    counted = bot_metric(stack, "skinsense_clinician_refused_total", what="press")

    forged = [
        stack.user.forge_callback(
            chat, message["message_id"], f"clin|{'no_action' if n % 2 else 'DROP TABLE jobs; ' * 3}|{alert.id}"
        )
        for n in range(25)
        for chat, message in ((stranger, welcome), (patient, own))
    ]
    assert {answer_to(stack, query) for query in forged} == {clinician_texts.PRESS_REFUSED}, "each one answered"
    written = [a for a in actions(stack) if a.id not in before]
    assert len(written) == 2, [(a.chat, a.action) for a in written]
    by_chat = {a.chat: a for a in written}
    assert set(by_chat) == {
        patient_chat_label(NO_CONSENT_REF),
        patient_chat_label(chat_reference(patient, CHAT_HASH_KEY)),
    }, "no reference stored for a chat that never consented"
    assert {a.action for a in written} <= {"no_action", "unknown"} and all(a.user_id is None for a in written)
    assert alert_row(stack, job_id).state == AlertState.OPEN
    assert bot_metric(stack, "skinsense_clinician_refused_total", what="press") - counted == len(forged)


def test_in_the_clinicians_group_a_sender_whose_id_equals_the_groups_is_not_a_clinician(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """Issue 22.5a: in a group only the listed user ids count (the chat id is the user id in a private chat only)."""
    job_id = high_risk_photo(stack, 3174, photos_by_risk)
    in_group = alert_message(stack, GROUP, job_id)
    refused = stack.user.tap(GROUP, in_group["message_id"], CLAIM, from_id=GROUP)
    assert answer_to(stack, refused) == clinician_texts.PRESS_REFUSED
    assert alert_row(stack, job_id).state == AlertState.OPEN
    assert command_reply(stack, GROUP, "/pending", from_id=GROUP)["text"] == clinician_texts.COMMAND_REFUSED
    assert stack.user.messages(GROUP)[-1]["chat"]["title"] == f"Clinicians' group {GROUP}"


def test_a_group_member_flooding_commands_gets_one_refusal_and_alerts_still_reach_the_group(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """Issue 22.1: a member not on the allow-list sends 40 /pending in a few seconds. Each is refused, but only
    the first is answered (a message to the group takes from the allowance its alerts need: one per 3 s), and a
    melanoma alert that follows reaches the group."""
    flooder = 7077
    before = {m["message_id"] for m in stack.user.bot_messages(GROUP)}
    sent = [stack.user.send_text(GROUP, "/pending", from_id=flooder) for _ in range(40)]
    stack.user.wait_for_reply(GROUP, sent[0]["message_id"], final=False)
    job_id = high_risk_photo(stack, 3181, photos_by_risk)
    alert_message(stack, GROUP, job_id)
    new = [m for m in stack.user.bot_messages(GROUP) if m["message_id"] not in before]
    refusals = [m for m in new if m.get("text") == clinician_texts.COMMAND_REFUSED]
    assert len(refusals) == 1, [m.get("text", "")[:40] for m in new]


# --- "Write to the patient" ---------------------------------------------------------------------------------


def write_prompt(stack: RunningStack, chat: int, alert: dict[str, Any], from_id: int | None = None) -> dict[str, Any]:
    """Tap "Write to the patient" under ``alert``; returns the prompt the bot then sends in that chat."""
    before = max(m["message_id"] for m in stack.user.messages(chat))
    query = stack.user.tap(chat, alert["message_id"], WRITE, from_id=from_id)
    assert answer_to(stack, query) == clinician_texts.PRESS_WRITE_PROMPTED
    job_line = alert["text"].split("Job: ", 1)[1].split("\n", 1)[0]

    def prompt() -> dict[str, Any] | None:
        later = [
            m
            for m in stack.user.bot_messages(chat)
            if m["message_id"] > before and m.get("text", "").startswith("\u270d") and job_line in m["text"]
        ]
        return later[0] if later else None

    return wait_until(prompt, 30, what=f"the prompt to write to the patient in chat {chat}")


def markup_sent_with(stack: RunningStack, message: dict[str, Any]) -> dict[str, Any]:
    """The reply markup the bot sent ``message`` with (a ForceReply is not part of the message: the call log has it)."""
    for call in reversed(stack.user.calls("sendMessage")):
        parameters = call["parameters"]
        shown = plain_text(str(parameters.get("text", "")), parameters.get("parse_mode"))
        if str(parameters.get("chat_id")) == str(message["chat"]["id"]) and shown == message["text"]:
            markup = parameters.get("reply_markup", "{}")
            return dict(json.loads(markup) if isinstance(markup, str) else markup)
    raise AssertionError("no sendMessage call for this message")


def reply_to(
    stack: RunningStack, chat: int, message: dict[str, Any], text: str, from_id: int | None = None
) -> dict[str, Any]:
    """A text replying to ``message`` (as Telegram's reply: the message it answers, quoted whole)."""
    fields: dict[str, Any] = {
        "text": text,
        "reply_to_message": {k: v for k, v in message.items() if k not in ("from_bot", "edits")},
    }
    if from_id is not None:  # a member of a group chat (the sandbox names clinicians "Dr", others "Patient")
        name = f"Dr {from_id}" if from_id == GROUP_CLINICIAN else f"Patient {from_id}"
        fields["from"] = {"id": from_id, "is_bot": False, "first_name": name}
    return stack.user.send_message(chat, fields)


def from_the_team(stack: RunningStack, patient: int) -> list[dict[str, Any]]:
    """The clinicians' own messages the patient received."""
    return [m for m in stack.user.bot_messages(patient) if "written for you by a clinician" in m.get("text", "")]


def test_a_clinician_writes_to_the_patient_in_their_own_words_and_the_alert_stays_as_it_was(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3190
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_message(stack, DOCTOR_A, job_id)
    prompt = write_prompt(stack, DOCTOR_A, alert)
    assert markup_sent_with(stack, prompt)["force_reply"] is True, "Telegram opens the reply to the prompt"
    words = "Please call the clinic on Monday <b>9:00</b> & bring this photo."
    sent = reply_to(stack, DOCTOR_A, prompt, words)
    confirmation = stack.user.wait_for_reply(DOCTOR_A, sent["message_id"], final=False)
    reference = f"P-{chat_reference(patient, CHAT_HASH_KEY)[:8]}"
    assert confirmation["text"] == clinician_texts.WRITE_SENT.format(patient=reference)
    (told,) = wait_until(lambda: from_the_team(stack, patient), 30, what="the clinician's message")
    assert words in told["text"], "shown as typed: HTML-escaped, not interpreted"
    assert told["text"].startswith("A message from the clinic's team about the photo you sent on ")
    assert "not by a person" in told["text"]
    assert any(e["type"] == "blockquote" for e in told.get("entities", [])), "the clinician's words set apart"

    too_long = reply_to(stack, DOCTOR_A, prompt, "x" * (clinician_texts.WRITE_MAX_CHARACTERS + 1))
    assert stack.user.wait_for_reply(DOCTOR_A, too_long["message_id"], final=False)["text"] == (
        clinician_texts.WRITE_TOO_LONG.format(
            length=clinician_texts.WRITE_MAX_CHARACTERS + 1, limit=clinician_texts.WRITE_MAX_CHARACTERS
        )
    )
    assert len(from_the_team(stack, patient)) == 1, "a text over the limit is not sent (nor cut)"
    row = alert_row(stack, job_id)
    assert (row.state, row.resolution) == (AlertState.OPEN, None) and row.sealed_contact is not None, "not resolved"
    recorded = actions(stack, row.id)
    assert [(a.action, a.outcome, a.user_id, a.user_name) for a in recorded] == [
        ("write", "prompted", DOCTOR_A, "Dr 9001"),
        ("write", "sent", DOCTOR_A, "Dr 9001"),
        ("write", "too_long", DOCTOR_A, "Dr 9001"),
    ]
    assert all("clinic on Monday" not in " ".join(map(str, vars(a).values())) for a in recorded), "no text stored"


def test_in_the_group_only_the_clinician_who_asked_can_answer_the_prompt_a_members_reply_is_refused(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3191
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    prompt = write_prompt(stack, GROUP, alert_message(stack, GROUP, job_id), from_id=GROUP_CLINICIAN)
    assert "for Dr 7001" in prompt["text"] and markup_sent_with(stack, prompt)["selective"] is True, "for the asker"

    member = reply_to(stack, GROUP, prompt, "Come to the clinic today, it is urgent", from_id=GROUP_MEMBER)
    assert stack.user.wait_for_reply(GROUP, member["message_id"], final=False)["text"] == clinician_texts.WRITE_REFUSED
    clinician = reply_to(stack, GROUP, prompt, "Please book an appointment this month.", from_id=GROUP_CLINICIAN)
    assert stack.user.wait_for_reply(GROUP, clinician["message_id"], final=False)["text"].startswith("Sent to patient")
    (told,) = wait_until(lambda: from_the_team(stack, patient), 30, what="the clinician's message")
    assert "Please book an appointment this month." in told["text"] and "urgent" not in told["text"]
    recorded = [(a.action, a.outcome, a.user_id) for a in actions(stack) if a.chat == str(GROUP)]
    assert ("write", "refused", GROUP_MEMBER) in recorded and ("write", "sent", GROUP_CLINICIAN) in recorded


def test_a_patient_who_erased_their_data_gets_no_written_message_and_the_clinician_is_told_why(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    patient = 3192
    job_id = high_risk_photo(stack, patient, photos_by_risk)
    alert = alert_message(stack, DOCTOR_B, job_id)
    prompt = write_prompt(stack, DOCTOR_B, alert)
    erase_everything(stack.user, patient, jobs=1)
    before = len(stack.user.bot_messages(patient))
    sent = reply_to(stack, DOCTOR_B, prompt, "Please send another photo.")
    answer = stack.user.wait_for_reply(DOCTOR_B, sent["message_id"], final=False)["text"]
    assert answer == clinician_texts.WRITE_NOT_SENT["patient_erased"]
    again = stack.user.tap(DOCTOR_B, alert["message_id"], WRITE)
    assert answer_to(stack, again) == clinician_texts.WRITE_NOT_SENT["patient_erased"], "told at once, no prompt"
    assert len(stack.user.bot_messages(patient)) == before, "nothing was sent to the patient"
    row = alert_row(stack, job_id)
    assert [(a.action, a.outcome) for a in actions(stack, row.id)] == [
        ("write", "prompted"),
        ("write", "patient_erased"),
        ("write", "patient_erased"),
    ]
