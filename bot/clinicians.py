"""The clinicians' side of the bot: an alert's buttons, and /pending, /case, /stats in clinician chats.

Registered before the patients' consent gate (group -2): clinician chats are not patients, so nothing a
clinician sends reaches the gate. Only allow-listed clinicians act (shared.clinicians.ClinicianAllowList): a
press or a command from anyone else (another member of a group chat, forged callback data from a patient's
chat) is refused with a short answer, changes nothing, and is recorded as refused. Every press is recorded
in the audit database and edits the alert in every clinician chat to show its state.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from telegram import CallbackQuery, Chat, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.durable_updates import may_pass
from bot.intake import chat_ref_of
from shared import messages
from shared.audit import AlertResolution, AlertState, ClinicianActionKind, ClinicianAlert
from shared.clinicians import (
    CALLBACK_PATTERN,
    ERASED_PATIENT,
    RESOLUTION_OF_ACTION,
    AlertStore,
    ClinicianAllowList,
    aware,
    get_alert_store,
    median,
    parse_callback,
    patient_chat_label,
)
from shared.config import get_settings
from shared.metrics import CLINICIAN_REVIEW
from shared.patients import get_patient_store

log = logging.getLogger(__name__)
CLINICIAN_COMMANDS = ("pending", "case", "stats")
PATIENT_CONTACT: dict[AlertResolution, str] = {
    AlertResolution.APPOINTMENT: messages.PATIENT_APPOINTMENT,
    AlertResolution.BETTER_PHOTO: messages.PATIENT_BETTER_PHOTO,
}


def allow_list() -> ClinicianAllowList:
    return ClinicianAllowList.from_settings(get_settings())


def clinician_name(user: User) -> str:
    """How the others see who took an alert: the clinician's Telegram name (and @username when there is one)."""
    return f"{user.full_name} (@{user.username})" if user.username else user.full_name


def _actor_chat(chat: Chat) -> str:
    """A clinician chat by its id (staff, configured); any other chat by its pseudonymous reference only."""
    return str(chat.id) if allow_list().is_clinician_chat(chat.id) else patient_chat_label(chat_ref_of(chat.id))


# --- Buttons ----------------------------------------------------------------------------------------------------


async def on_alert_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, chat, user = update.callback_query, update.effective_chat, update.effective_user
    if query is None or chat is None:
        raise ApplicationHandlerStop
    store = get_alert_store()
    parsed = parse_callback(query.data or "")
    action_name = (query.data or "").split("|")[1][:32] if (query.data or "").count("|") >= 1 else "?"
    user_id = None if user is None else user.id
    if user is None or not allow_list().allows(chat.id, user.id):
        await asyncio.to_thread(
            store.record_action,
            alert_id=None if parsed is None else parsed[1],
            action=action_name,
            chat=_actor_chat(chat),
            user_id=user_id if allow_list().is_clinician_chat(chat.id) else None,
            user_name=None,
            outcome="refused",
        )
        log.warning("clinician button refused: not an allow-listed clinician (%s chat)", chat.type)
        await _answer(query, messages.PRESS_REFUSED)
        raise ApplicationHandlerStop
    if parsed is None:
        await asyncio.to_thread(
            store.record_action,
            alert_id=None,
            action=action_name,
            chat=str(chat.id),
            user_id=user.id,
            user_name=clinician_name(user),
            outcome="unknown_alert",
        )
        await _answer(query, messages.PRESS_UNKNOWN)
        raise ApplicationHandlerStop
    action, thread_id = parsed
    answer, outcome = await _decide(store, action, thread_id, clinician_name(user), context)
    await asyncio.to_thread(
        store.record_action,
        alert_id=thread_id,
        action=action.value,
        chat=str(chat.id),
        user_id=user.id,
        user_name=clinician_name(user),
        outcome=outcome,
    )
    log.info("alert %s: %s by a clinician (%s)", thread_id, action.value, outcome)
    await _answer(query, answer)
    if outcome != "unknown_alert":
        await refresh_alert(context, store, thread_id)
    raise ApplicationHandlerStop


async def _decide(
    store: AlertStore, action: ClinicianActionKind, thread_id: uuid.UUID, who: str, context: ContextTypes.DEFAULT_TYPE
) -> tuple[str, str]:
    """Apply a clinician's press; returns the answer they read and the outcome recorded."""
    if action == ClinicianActionKind.CLAIM:
        decision = await asyncio.to_thread(store.claim, thread_id, who)
        if decision is None:
            return messages.PRESS_UNKNOWN, "unknown_alert"
        alert = decision.alert
        if decision.changed:
            _observe(alert, "claim")
            return messages.PRESS_CLAIMED, "done"
        if alert.state == AlertState.RESOLVED:
            return _already_resolved(alert), "already_resolved"
        return messages.PRESS_ALREADY_CLAIMED.format(who=alert.claimed_by), "already_claimed"
    resolution = RESOLUTION_OF_ACTION[action]
    decision = await asyncio.to_thread(store.resolve, thread_id, resolution, who)
    if decision is None:
        return messages.PRESS_UNKNOWN, "unknown_alert"
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
    described = messages.RESOLUTION_TEXT[resolution.value]
    answer = messages.PRESS_RESOLVED.format(resolution=described)
    if resolution in PATIENT_CONTACT:
        answer = await _tell_patient(store, decision.alert, resolution, context)
    await asyncio.to_thread(store.erase_secrets, thread_id)  # resolved: neither photo nor contact is needed now
    return answer, "done"


def _already_resolved(alert: ClinicianAlert) -> str:
    resolution = messages.RESOLUTION_TEXT[str(alert.resolution)]
    return messages.PRESS_ALREADY_RESOLVED.format(who=alert.resolved_by, resolution=resolution)


def _observe(alert: ClinicianAlert, step: str) -> None:
    moment = alert.claimed_at if step == "claim" else alert.resolved_at
    if moment is not None:
        CLINICIAN_REVIEW.labels(step=step).observe(max((aware(moment) - aware(alert.created_at)).total_seconds(), 0))


async def _tell_patient(
    store: AlertStore, alert: ClinicianAlert, resolution: AlertResolution, context: ContextTypes.DEFAULT_TYPE
) -> str:
    """The patient's kind message, if their consent covers contact and their chat is still known."""
    described = messages.RESOLUTION_TEXT[resolution.value]
    if alert.chat_ref == ERASED_PATIENT:
        return messages.PRESS_PATIENT_ERASED.format(resolution=described)
    patients = get_patient_store()
    consents = [
        await asyncio.to_thread(patients.consent, alert.chat_ref, version)
        for version in messages.PRIVACY_VERSIONS_COVERING_CONTACT
    ]
    if not any(consents):
        return messages.PRESS_NO_CONSENT.format(resolution=described)
    contact = await asyncio.to_thread(store.contact, alert.id)
    if contact is None:
        return messages.PRESS_NO_CONTACT.format(resolution=described)
    text = PATIENT_CONTACT[resolution].format(date=aware(alert.created_at).strftime("%Y-%m-%d"))
    try:
        await context.bot.send_message(contact.chat_id, text)
    except TelegramError as error:
        if may_pass(error):
            # Passing trouble: the press is handled again later (bot/durable_updates.py), and tells the patient
            # then; the contact is kept until it has (``_decide``).
            raise
        log.warning("alert %s: the patient could not be messaged (%s)", alert.id, type(error).__name__)
        return messages.PRESS_NO_CONTACT.format(resolution=described)  # blocked the bot, or deleted the chat
    await asyncio.to_thread(store.record_patient_told, alert.id)
    return messages.PRESS_PATIENT_TOLD.format(resolution=described)


async def _answer(query: CallbackQuery, text: str) -> None:
    try:
        await query.answer(text, show_alert=len(text) > 60)
    except TelegramError as error:  # a query older than Telegram keeps: the press itself is recorded
        log.info("callback answer failed (%s)", type(error).__name__)


async def refresh_alert(context: ContextTypes.DEFAULT_TYPE, store: AlertStore, thread_id: uuid.UUID) -> int:
    """Edit the thread's alert in every clinician chat that has it to its current state; returns edits made."""
    from shared.clinicians import alert_keyboard

    view = await asyncio.to_thread(store.view, thread_id)
    if view is None:
        return 0
    edited = 0
    for delivery in await asyncio.to_thread(store.deliveries, [thread_id]):
        if delivery.message_id is None:
            continue
        text = messages.clinician_alert(view, kind=delivery.kind.value, possibly_repeated=delivery.possibly_repeated)
        try:
            await context.bot.edit_message_text(
                text,
                chat_id=delivery.chat_id,
                message_id=delivery.message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=alert_keyboard(view),
            )
            edited += 1
        except BadRequest as error:
            if "not modified" not in error.message:
                log.warning("alert %s: edit failed (%s)", thread_id, error.message)
        except TelegramError as error:
            log.warning("alert %s: edit failed (%s)", thread_id, type(error).__name__)
    return edited


# --- Commands ---------------------------------------------------------------------------------------------------


async def _allowed_command(update: Update) -> bool:
    """A clinician's command; anyone else in a clinician chat is refused (answered, recorded)."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or message is None:
        return False
    if user is not None and allow_list().allows(chat.id, user.id):
        return True
    command = (message.text or "").split()[0][:32] if message.text else "?"
    await asyncio.to_thread(
        get_alert_store().record_action,
        alert_id=None,
        action=command,
        chat=str(chat.id),
        user_id=None if user is None else user.id,
        user_name=None,
        outcome="refused",
    )
    log.warning("clinician command refused: not an allow-listed clinician (%s chat)", chat.type)
    await message.reply_text(messages.COMMAND_REFUSED, do_quote=True)
    return False


async def on_pending(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if await _allowed_command(update):
        store = get_alert_store()
        now = datetime.now(UTC)
        rows = []
        for alert in await asyncio.to_thread(store.pending):
            if alert.state == AlertState.CLAIMED:
                state = f"claimed by {alert.claimed_by}"
            else:
                state = "open, not claimed" + (" (reminded)" if alert.reminded_at else "")
            if alert.escalated_at:
                state += ", escalated"
            age = (now - aware(alert.created_at)).total_seconds()
            rows.append((str(alert.job_id), f"patient P-{alert.chat_ref[:8]}", state, age))
        assert update.effective_message is not None
        await update.effective_message.reply_text(messages.pending_list(rows), parse_mode=ParseMode.HTML, do_quote=True)
    raise ApplicationHandlerStop


async def on_case(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if await _allowed_command(update):
        message = update.effective_message
        assert message is not None
        try:
            job_id = uuid.UUID((context.args or [""])[0])
        except ValueError:
            await message.reply_text(messages.CASE_USAGE, do_quote=True)
            raise ApplicationHandlerStop from None
        store = get_alert_store()
        alert = await asyncio.to_thread(store.for_job, job_id)
        view = None if alert is None else await asyncio.to_thread(store.view, alert.id)
        if view is None:
            await message.reply_text(messages.CASE_NOT_FOUND.format(job_id=job_id), do_quote=True)
        else:
            await message.reply_text(messages.clinician_alert(view), parse_mode=ParseMode.HTML, do_quote=True)
    raise ApplicationHandlerStop


async def on_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if await _allowed_command(update):
        store = get_alert_store()
        now = datetime.now(UTC)
        today = await asyncio.to_thread(store.count_since, datetime.combine(now.date(), time(), tzinfo=UTC))
        week = await asyncio.to_thread(store.count_since, now - timedelta(days=7))
        times = await asyncio.to_thread(store.review_times, now - timedelta(days=30))
        to_claim = [t.to_claim_s for t in times if t.to_claim_s is not None]
        to_resolution = [t.to_resolution_s for t in times if t.to_resolution_s is not None]
        text = messages.clinician_stats(today, week, median(to_claim), median(to_resolution))
        assert update.effective_message is not None
        await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, do_quote=True)
    raise ApplicationHandlerStop


async def on_clinician_chat_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Anything else in a clinician chat: the commands, in a private chat; silence in a group (clinicians talk
    to each other there) and for an edited message. Never the patients' consent gate."""
    chat, message = update.effective_chat, update.message
    if chat is not None and message is not None and chat.type == Chat.PRIVATE:
        await message.reply_text(messages.CLINICIAN_HELP)
    raise ApplicationHandlerStop


def register_clinician_handlers(application: Application[Any, Any, Any, Any, Any, Any], group: int = -2) -> None:
    """Before the consent gate (group -1): clinicians are not patients."""
    clinician_chats = filters.Chat(chat_id=sorted(allow_list().chat_ids))
    commands = clinician_chats & filters.UpdateType.MESSAGE  # an edited command is not asked again
    application.add_handler(CallbackQueryHandler(on_alert_button, pattern=CALLBACK_PATTERN), group=group)
    application.add_handler(CommandHandler("pending", on_pending, filters=commands), group=group)
    application.add_handler(CommandHandler("case", on_case, filters=commands), group=group)
    application.add_handler(CommandHandler("stats", on_stats, filters=commands), group=group)
    application.add_handler(MessageHandler(clinician_chats, on_clinician_chat_message), group=group)
