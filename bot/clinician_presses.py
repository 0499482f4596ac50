"""The clinicians' side of the bot: an alert's buttons, and /pending, /case, /stats in clinician chats.

Registered before the patients' consent gate (group -2): clinician chats are not patients, so nothing a
clinician sends reaches the gate. Only allow-listed clinicians act (shared.clinic.buttons.ClinicianAllowList): a
press or a command from anyone else (another member of a group chat, forged callback data from a patient's
chat) is refused with a short answer and changes nothing; every refusal is counted
(skinsense_clinician_refused_total) and a sample of them recorded (at most one audit row per chat and
``REFUSAL_SAMPLE_INTERVAL_S``: a flood of forged presses cannot flood the audit). Every clinician's press is
recorded in the audit database and edits the alert in every clinician chat to show its state.

"Reviewed: no action needed" on a melanoma alert asks first ("Yes, close it" / "Cancel" in place of the
buttons, in the chat that pressed). "Ask for a better photo" leaves the alert unresolved, waiting for the photo.
/pending lists each unresolved thread with a tappable ``/case_<start of its job id>``; /case shows the alert as
it is now, with its photo and its buttons, and is kept current like the alert.

"Write to the patient" asks, in the chat that pressed, for the clinician's own words (a ForceReply prompt whose
first line names the alert's job and the clinician: no state is kept in memory). Their reply to that prompt (in
a group: by that clinician only) goes to the patient, HTML-escaped under a heading saying it comes from the
clinic's team, with the same checks as the canned messages (consent covering contact, data not erased); the
clinician is told whether it was sent. Recorded as an action (who, when, the outcome), never the text; the
alert's state does not change.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from html import escape
from typing import Any

from telegram import CallbackQuery, Chat, ForceReply, Message, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    ApplicationHandlerStop,
)

from bot.clinician_access import clinician_name, is_clinician, on_clinician_chat_message, press_name, refuse
from bot.context import BotContext
from bot.durable_updates import may_pass
from bot.patients import PatientStore
from shared.audit import (
    AlertResolution,
    AlertState,
    ClinicalFinding,
    ClinicianActionKind,
    ClinicianAlert,
    Referral,
)
from shared.clinic.buttons import (
    Press,
    alert_keyboard,
    confirm_keyboard,
    needs_confirmation,
    parse_callback,
)
from shared.clinic.refresh import alert_edits
from shared.clinic.store import ERASED_PATIENT, RESOLUTION_OF_ACTION, AlertStore, SealedContact
from shared.clinic.views import patient_reference
from shared.metrics import CLINICIAN_REVIEW
from shared.telegram_calls import is_not_modified
from shared.texts import clinician as clinician_texts

log = logging.getLogger(__name__)


PATIENT_CONTACT: dict[AlertResolution, str] = {
    AlertResolution.APPOINTMENT: clinician_texts.PATIENT_APPOINTMENT,
    AlertResolution.BETTER_PHOTO: clinician_texts.PATIENT_BETTER_PHOTO,
}


# "Write to the patient": a reply to the bot's prompt is one when the prompt's first line reads like this.
WRITE_PROMPT_REF = re.compile(
    r"\u270d\ufe0f Message to patient P-\S* about job (?P<job_id>[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}), "
    r"for .* \(Telegram id (?P<user_id>\d+)\)"
)


async def on_alert_button(update: Update, context: BotContext) -> None:
    query, chat, user = update.callback_query, update.effective_chat, update.effective_user
    if query is None or chat is None:
        raise ApplicationHandlerStop
    store = context.bot_data.services.alerts
    parsed = parse_callback(query.data or "")
    if user is None or not is_clinician(chat, user, context.bot_data.services.clinicians):
        thread = None if parsed is None else parsed.thread_id
        await refuse(context, "press", chat, user, press_name(query.data or ""), thread)
        await _answer(query, clinician_texts.PRESS_REFUSED)
        raise ApplicationHandlerStop
    if parsed is None:
        await asyncio.to_thread(
            store.record_action,
            alert_id=None,
            action=press_name(query.data or ""),
            chat=str(chat.id),
            user_id=user.id,
            user_name=clinician_name(user),
            outcome="unknown_alert",
        )
        await _answer(query, clinician_texts.PRESS_UNKNOWN)
        raise ApplicationHandlerStop
    action, thread_id = parsed.action, parsed.thread_id
    if action == ClinicianActionKind.WRITE:
        answer, outcome = await _prompt_for_message(store, thread_id, chat, user, context)
    elif parsed.choice is not None:
        answer, outcome = await _record_outcome(store, parsed, clinician_name(user))
    else:
        answer, outcome = await _decide(store, action, thread_id, clinician_name(user), context)
    await asyncio.to_thread(
        store.record_action,
        alert_id=thread_id,
        action=action.value,
        chat=str(chat.id),
        user_id=user.id,
        user_name=clinician_name(user),
        outcome=outcome,
        detail=None if parsed.choice is None else parsed.choice.value,
    )
    log.info("alert %s: %s by a clinician (%s)", thread_id, action.value, outcome)
    await _answer(query, answer)
    if outcome == "confirmation_asked":
        await _edit_buttons(query, confirm_keyboard(thread_id))
    elif outcome == "cancelled":
        view = await asyncio.to_thread(store.view, thread_id)
        if view is not None:
            await _edit_buttons(query, alert_keyboard(view))
    elif outcome != "unknown_alert" and action != ClinicianActionKind.WRITE:  # writing changes no state
        await refresh_alert(context, store, thread_id, pressed=query.message)
    raise ApplicationHandlerStop


async def _decide(
    store: AlertStore, action: ClinicianActionKind, thread_id: uuid.UUID, who: str, context: BotContext
) -> tuple[str, str]:
    """Apply a clinician's press; returns the answer they read and the outcome recorded."""
    if action == ClinicianActionKind.CLAIM:
        decision = await asyncio.to_thread(store.claim, thread_id, who)
        if decision is None:
            return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
        alert = decision.alert
        if decision.changed:
            _observe(alert, "claim")
            return clinician_texts.PRESS_CLAIMED, "done"
        if alert.state == AlertState.RESOLVED:
            return _already_resolved(alert), "already_resolved"
        return clinician_texts.PRESS_ALREADY_CLAIMED.format(who=alert.claimed_by), "already_claimed"
    if action == ClinicianActionKind.CANCEL:
        return clinician_texts.PRESS_CANCELLED, "cancelled"
    if action == ClinicianActionKind.BETTER_PHOTO:
        return await _ask_for_photo(store, thread_id, who, context)
    if action == ClinicianActionKind.NO_ACTION:
        view = await asyncio.to_thread(store.view, thread_id)
        if view is None:
            return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
        if view.state != AlertState.RESOLVED and needs_confirmation(view):
            return clinician_texts.PRESS_CONFIRM_NO_ACTION, "confirmation_asked"
    resolution = RESOLUTION_OF_ACTION[action]
    decision = await asyncio.to_thread(store.resolve, thread_id, resolution, who)
    if decision is None:
        return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
    if not decision.changed:
        alert = decision.alert
        replayed = alert.resolution == resolution and alert.resolved_by == who and alert.sealed_contact is not None
        if replayed and resolution in PATIENT_CONTACT:
            # This very press, handled again: the last handling resolved the alert but stopped before the patient
            # was told (the secrets are erased only once that is done).
            answer = await _tell_patient(store, alert, resolution, context)
            await asyncio.to_thread(store.erase_secrets, thread_id)
            return answer, "done"
        return _already_resolved(alert), "already_resolved"
    _observe(decision.alert, "resolution")
    if decision.alert.claimed_at == decision.alert.resolved_at:
        _observe(decision.alert, "claim")  # resolved without a claim first: claimed at the same moment
    described = clinician_texts.RESOLUTION_TEXT[resolution.value]
    answer = clinician_texts.PRESS_RESOLVED.format(resolution=described)
    if resolution in PATIENT_CONTACT:
        answer = await _tell_patient(store, decision.alert, resolution, context)
    await asyncio.to_thread(store.erase_secrets, thread_id)  # resolved: neither photo nor contact is needed now
    return answer, "done"


async def _record_outcome(store: AlertStore, press: Press, who: str) -> tuple[str, str]:
    """After the resolution, for the clinic's figures: what the clinician concluded, then whether they referred."""
    if isinstance(press.choice, ClinicalFinding):
        decision = await asyncio.to_thread(store.conclude, press.thread_id, press.choice, who)
        answer = clinician_texts.PRESS_CONCLUDED.format(finding=clinician_texts.FINDING_NAMES[press.choice.value])
        refused = clinician_texts.PRESS_NOT_RESOLVED
    else:
        assert isinstance(press.choice, Referral)
        decision = await asyncio.to_thread(store.refer, press.thread_id, press.choice, who)
        job = "" if decision is None else str(decision.alert.job_id)[:8]  # the thread's root: its first photo
        answer = clinician_texts.PRESS_REFERRED.format(
            referral=clinician_texts.REFERRAL_BUTTONS[press.choice.value].lower(), job=job
        )
        refused = clinician_texts.PRESS_NOT_CONCLUDED
    if decision is None:
        return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
    return (answer, "done") if decision.changed else (refused, "too_early")


async def _ask_for_photo(store: AlertStore, thread_id: uuid.UUID, who: str, context: BotContext) -> tuple[str, str]:
    """ "Ask for a better photo": the patient is asked (consent permitting) and the alert waits for the photo,
    unresolved and claimed (its photo and the patient's contact are kept: it is still open work)."""
    before = await asyncio.to_thread(store.load, thread_id)
    decision = await asyncio.to_thread(store.ask_for_photo, thread_id, who)
    if decision is None or before is None:
        return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
    alert = decision.alert
    if not decision.changed:
        if alert.state == AlertState.RESOLVED:
            return _already_resolved(alert), "already_resolved"
        replayed = (
            alert.state == AlertState.AWAITING_PHOTO
            and alert.patient_told_at is None
            and alert.sealed_contact is not None
            and not await asyncio.to_thread(store.photo_asked_recorded, thread_id)
        )
        if replayed:
            # This press, handled again: the last handling asked but stopped before the patient was told.
            return await _tell_patient(store, alert, AlertResolution.BETTER_PHOTO, context), "done"
        view = await asyncio.to_thread(store.view, thread_id)
        asker = (view.photo_asked_by if view is not None else None) or alert.claimed_by
        return clinician_texts.PRESS_PHOTO_ALREADY_ASKED.format(who=asker), "already_asked"
    if before.state == AlertState.OPEN:
        _observe(alert, "claim")  # asked without a claim first: claimed at the same moment
    return await _tell_patient(store, alert, AlertResolution.BETTER_PHOTO, context), "done"


def _already_resolved(alert: ClinicianAlert) -> str:
    resolution = clinician_texts.RESOLUTION_TEXT[str(alert.resolution)]
    return clinician_texts.PRESS_ALREADY_RESOLVED.format(who=alert.resolved_by, resolution=resolution)


def _observe(alert: ClinicianAlert, step: str) -> None:
    moment = alert.claimed_at if step == "claim" else alert.resolved_at
    if moment is not None:
        CLINICIAN_REVIEW.labels(step=step).observe(max((moment - alert.created_at).total_seconds(), 0))


async def _tell_patient(
    store: AlertStore, alert: ClinicianAlert, resolution: AlertResolution, context: BotContext
) -> str:
    """The patient's kind message, if their consent covers contact and their chat is still known."""
    described = clinician_texts.RESOLUTION_TEXT[resolution.value]
    contact, why_not = await _patient_contact(store, context.bot_data.services.patients, alert)
    if contact is None:
        cannot = {
            "patient_erased": clinician_texts.PRESS_PATIENT_ERASED,
            "no_consent": clinician_texts.PRESS_NO_CONSENT,
            "no_contact": clinician_texts.PRESS_NO_CONTACT,
        }
        return cannot[why_not].format(resolution=described)
    text = PATIENT_CONTACT[resolution].format(date=alert.created_at.strftime("%Y-%m-%d"))
    try:
        await context.bot.send_message(contact.chat_id, text)
    except TelegramError as error:
        if may_pass(error):
            # Passing trouble: the press is handled again later (bot/durable_updates.py), and tells the patient
            # then; the contact is kept until it has (``_decide``).
            raise
        log.warning("alert %s: the patient could not be messaged (%s)", alert.id, type(error).__name__)
        return clinician_texts.PRESS_NO_CONTACT.format(resolution=described)  # blocked the bot, or deleted the chat
    await asyncio.to_thread(store.record_patient_told, alert.id)
    return clinician_texts.PRESS_PATIENT_TOLD.format(resolution=described)


async def _patient_contact(
    store: AlertStore, patients: PatientStore, alert: ClinicianAlert
) -> tuple[SealedContact | None, str]:
    """The patient's chat, when a clinician may message them: their data is not erased, the privacy text they
    agreed to covers contact, and the thread still holds their chat. Otherwise None and why not: "patient_erased",
    "no_consent" or "no_contact"."""
    if alert.chat_ref == ERASED_PATIENT:
        return None, "patient_erased"
    consents = [
        await asyncio.to_thread(patients.consent, alert.chat_ref, version)
        for version in clinician_texts.PRIVACY_VERSIONS_COVERING_CONTACT
    ]
    if not any(consents):
        return None, "no_consent"
    contact = await asyncio.to_thread(store.contact, alert.id)
    return (None, "no_contact") if contact is None else (contact, "")


async def _prompt_for_message(
    store: AlertStore, thread_id: uuid.UUID, chat: Chat, user: User, context: BotContext
) -> tuple[str, str]:
    """ "Write to the patient": the prompt for the clinician's words, in the chat that pressed (a ForceReply; in a
    group, for the clinician who pressed: they are mentioned). Nothing is asked when no message could be sent."""
    root = await asyncio.to_thread(store.load, thread_id)
    if root is None:
        return clinician_texts.PRESS_UNKNOWN, "unknown_alert"
    if root.state == AlertState.RESOLVED:
        return _already_resolved(root), "already_resolved"
    contact, why_not = await _patient_contact(store, context.bot_data.services.patients, root)
    view = None if contact is None else await asyncio.to_thread(store.view, thread_id)
    if contact is None or view is None:
        return clinician_texts.WRITE_NOT_SENT[why_not or "no_contact"], why_not or "no_contact"
    mention = f'<a href="tg://user?id={user.id}">{escape(clinician_name(user))}</a>'
    prompt = clinician_texts.WRITE_PROMPT.format(
        patient=view.patient_ref,
        job_id=view.job_id,
        who=mention,
        user_id=user.id,
        limit=clinician_texts.WRITE_MAX_CHARACTERS,
        date=view.created_at.strftime("%Y-%m-%d"),
    )
    placeholder = clinician_texts.WRITE_PLACEHOLDER.format(patient=view.patient_ref)[:64]
    await context.bot.send_message(
        chat.id,
        prompt,
        parse_mode=ParseMode.HTML,
        reply_markup=ForceReply(selective=chat.type != Chat.PRIVATE, input_field_placeholder=placeholder),
    )
    return clinician_texts.PRESS_WRITE_PROMPTED, "prompted"


def prompt_reference(prompt: Message | None, bot_id: int) -> tuple[uuid.UUID, int] | None:
    """The job and the clinician a "Write to the patient" prompt was for, when ``prompt`` is one (the bot's own
    message, its first line as ``WRITE_PROMPT`` writes it); None for any other message."""
    if prompt is None or prompt.from_user is None or prompt.from_user.id != bot_id or not prompt.text:
        return None
    match = WRITE_PROMPT_REF.fullmatch(prompt.text.split("\n", 1)[0])
    return None if match is None else (uuid.UUID(match["job_id"]), int(match["user_id"]))


async def on_clinician_reply(update: Update, context: BotContext) -> None:
    """A reply in a clinician chat: to a "Write to the patient" prompt, by the clinician it was for, the message
    goes to the patient; anything else is like any other message there."""
    chat, user, message = update.effective_chat, update.effective_user, update.message
    reference = None if message is None else prompt_reference(message.reply_to_message, context.bot.id)
    if chat is None or message is None or reference is None:
        await on_clinician_chat_message(update, context)
        return
    job_id, asked_by = reference
    if user is None or not is_clinician(chat, user, context.bot_data.services.clinicians):
        if await refuse(context, "reply", chat, user, ClinicianActionKind.WRITE.value):
            await message.reply_text(clinician_texts.WRITE_REFUSED, do_quote=True)  # once per member and interval
        raise ApplicationHandlerStop
    if user.id != asked_by:
        await message.reply_text(clinician_texts.WRITE_NOT_YOURS, do_quote=True)
        raise ApplicationHandlerStop
    store = context.bot_data.services.alerts
    answer, outcome, alert_id = await _write_to_patient(store, job_id, message.text or "", context)
    await asyncio.to_thread(
        store.record_action,
        alert_id=alert_id,
        action=ClinicianActionKind.WRITE.value,
        chat=str(chat.id),
        user_id=user.id,
        user_name=clinician_name(user),
        outcome=outcome,
    )
    log.info("alert %s: a clinician's message to the patient (%s)", alert_id, outcome)
    await message.reply_text(answer, do_quote=True)
    raise ApplicationHandlerStop


async def _write_to_patient(
    store: AlertStore, job_id: uuid.UUID, text: str, context: BotContext
) -> tuple[str, str, uuid.UUID | None]:
    """Send a clinician's words to the patient of the alert for ``job_id`` (its thread's patient) with the same
    checks as the canned messages; returns what the clinician reads, the outcome recorded and the thread's id."""
    alert = await asyncio.to_thread(store.for_job, job_id)
    root = None if alert is None else await asyncio.to_thread(store.load, alert.thread_id)
    if root is None:
        return clinician_texts.WRITE_UNKNOWN, "unknown_alert", None
    words = text.strip()
    if len(words) > clinician_texts.WRITE_MAX_CHARACTERS:
        return (
            clinician_texts.WRITE_TOO_LONG.format(length=len(words), limit=clinician_texts.WRITE_MAX_CHARACTERS),
            "too_long",
            root.id,
        )
    if root.state == AlertState.RESOLVED:
        resolution = clinician_texts.RESOLUTION_TEXT[str(root.resolution)]
        return (
            clinician_texts.WRITE_ALREADY_RESOLVED.format(who=root.resolved_by, resolution=resolution),
            "already_resolved",
            root.id,
        )
    contact, why_not = await _patient_contact(store, context.bot_data.services.patients, root)
    if contact is None:
        return clinician_texts.WRITE_NOT_SENT[why_not], why_not, root.id
    date = root.created_at.strftime("%Y-%m-%d")
    try:
        await context.bot.send_message(
            contact.chat_id,
            clinician_texts.PATIENT_CLINICIAN_MESSAGE.format(date=date, text=escape(words)),
            parse_mode=ParseMode.HTML,
        )
    except TelegramError as error:
        if may_pass(error):
            raise  # handled again later (bot/durable_updates.py): the message goes then
        log.warning("alert %s: the patient could not be messaged (%s)", root.id, type(error).__name__)
        return clinician_texts.WRITE_NOT_SENT["no_contact"], "no_contact", root.id
    return clinician_texts.WRITE_SENT.format(patient=patient_reference(root.chat_ref)), "sent", root.id


async def _answer(query: CallbackQuery, text: str) -> None:
    try:
        await query.answer(text, show_alert=len(text) > 60)
    except TelegramError as error:  # a query older than Telegram keeps: the press itself is recorded
        log.info("callback answer failed (%s)", type(error).__name__)


async def _edit_buttons(query: CallbackQuery, keyboard: Any) -> None:
    """The buttons under the pressed message only (the confirmation, or the alert's buttons back)."""
    try:
        await query.edit_message_reply_markup(reply_markup=keyboard)
    except BadRequest as error:
        if not is_not_modified(error):
            log.warning("alert buttons: edit failed (%s)", error.message)
    except TelegramError as error:
        log.warning("alert buttons: edit failed (%s)", type(error).__name__)


async def refresh_alert(context: BotContext, store: AlertStore, thread_id: uuid.UUID, pressed: Any = None) -> int:
    """Edit the thread's alert in every clinician chat that has it (and its latest /case copies) to its current
    state, and the ``pressed`` message too when it is none of those (an older /case copy); returns edits made."""
    also = (pressed.chat_id, pressed.message_id) if isinstance(pressed, Message) else None
    edited = 0
    for edit in await asyncio.to_thread(alert_edits, store, thread_id, also):
        try:
            await context.bot.edit_message_text(
                edit.text,
                chat_id=edit.chat_id,
                message_id=edit.message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=edit.keyboard,
            )
            edited += 1
        except BadRequest as error:
            if not is_not_modified(error):
                log.warning("alert %s: edit failed (%s)", thread_id, error.message)
        except TelegramError as error:
            log.warning("alert %s: edit failed (%s)", thread_id, type(error).__name__)
    return edited
