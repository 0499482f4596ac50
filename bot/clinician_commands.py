"""The clinicians' commands: /pending, /case (and its tappable /case_<ref>), /stats, and the handlers' registration
before the patients' consent gate."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.clinician_access import (
    CASE_SHORTCUT,
    clinician_name,
    command_name,
    is_clinician,
    on_clinician_chat_message,
    refuse,
)
from bot.clinician_presses import on_alert_button, on_clinician_reply, refresh_alert
from bot.context import BotContext
from shared.audit import AlertDeliveryKind, ClinicalFinding, ClinicianActionKind, MediaKind, utc_now
from shared.clinic.buttons import (
    CALLBACK_PATTERN,
    ClinicianAllowList,
    alert_keyboard,
)
from shared.clinic.store import AlertStore
from shared.clinic.views import CASE_COMMAND, AlertView, case_ref_digits, median, patient_reference
from shared.texts import clinician as clinician_texts

log = logging.getLogger(__name__)


async def _allowed_command(update: Update, context: BotContext) -> bool:
    """A clinician's command; anyone else in a clinician chat is refused (answered, counted, sampled)."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or message is None:
        return False
    if is_clinician(chat, user, context.bot_data.services.clinicians):
        return True
    if await refuse(context, "command", chat, user, command_name(message.text or "")):
        await message.reply_text(clinician_texts.COMMAND_REFUSED, do_quote=True)  # once per chat and sampling interval
    return False


async def on_pending(update: Update, context: BotContext) -> None:
    if await _allowed_command(update, context):
        now = utc_now()
        rows = []
        for case in await asyncio.to_thread(context.bot_data.services.alerts.pending_cases):
            alert = case.alert
            finding = (
                clinician_texts.pending_finding(str(case.risk or "?"), case.ranking, case.melanoma_alert)
                if case.ranking
                else "?"
            )
            age = (now - alert.created_at).total_seconds()
            command = f"/{CASE_COMMAND}_{case.case_ref}"
            rows.append(
                (
                    command,
                    f"patient {patient_reference(alert.chat_ref)}",
                    finding,
                    clinician_texts.pending_state(alert),
                    age,
                )
            )
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            clinician_texts.pending_list(rows), parse_mode=ParseMode.HTML, do_quote=True
        )
    raise ApplicationHandlerStop


async def on_case(update: Update, context: BotContext) -> None:
    """/case JOB_ID (typed: the whole job id, or its first characters); /case JOB_ID biopsy RESULT records the
    biopsy's result for the clinic's figures."""
    if await _allowed_command(update, context):
        args = context.args or []
        if len(args) >= 2 and args[1].lower() == BIOPSY_WORD:
            await _record_biopsy(update, context, args[0], " ".join(args[2:]))
        else:
            await _show_case(update, context, " ".join(args))
    raise ApplicationHandlerStop


BIOPSY_WORD = "biopsy"


def biopsy_finding(typed: str) -> ClinicalFinding | None:
    """A biopsy's result as a clinician types it: a code (mel, bcc, scc...) or a name ("melanoma", "basal cell
    carcinoma", "naevus"...); never "cannot tell" (a biopsy tells)."""
    wanted = " ".join(typed.lower().replace("-", " ").split())
    names = {finding.value: finding for finding in ClinicalFinding}
    for code, label in {**clinician_texts.CONCLUSION_BUTTONS, **clinician_texts.FINDING_NAMES}.items():
        names[label.lower()] = ClinicalFinding(code)
    names.update(naevus=ClinicalFinding.NV, nevus=ClinicalFinding.NV, mole=ClinicalFinding.NV)
    found = names.get(wanted)
    return None if found == ClinicalFinding.CANNOT_TELL else found


async def _record_biopsy(update: Update, context: BotContext, ref: str, typed: str) -> None:
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    assert message is not None and chat is not None
    finding = biopsy_finding(typed)
    if case_ref_digits(ref) is None or finding is None:
        results = ", ".join(f.value for f in ClinicalFinding if f != ClinicalFinding.CANNOT_TELL)
        await message.reply_text(clinician_texts.CASE_BIOPSY_USAGE.format(results=results), do_quote=True)
        return
    store = context.bot_data.services.alerts
    found = await asyncio.to_thread(store.for_case_ref, ref)
    if len(found) != 1:
        text = clinician_texts.CASE_AMBIGUOUS if found else clinician_texts.CASE_NOT_FOUND
        await message.reply_text(text.format(job_id=ref.strip()), do_quote=True)
        return
    alert = found[0]
    who = clinician_name(user) if user is not None else "?"
    decision = await asyncio.to_thread(store.record_biopsy, alert.thread_id, finding, who)
    await asyncio.to_thread(
        store.record_action,
        alert_id=alert.thread_id,
        action=ClinicianActionKind.BIOPSY.value,
        chat=str(chat.id),
        user_id=None if user is None else user.id,
        user_name=who,
        outcome="done" if decision is not None else "unknown_alert",
        detail=finding.value,
    )
    if decision is None:
        await message.reply_text(clinician_texts.CASE_NOT_FOUND.format(job_id=ref.strip()), do_quote=True)
        return
    recorded = clinician_texts.CASE_BIOPSY_RECORDED.format(
        job=str(alert.job_id)[:8], finding=clinician_texts.FINDING_NAMES[finding.value]
    )
    await message.reply_text(recorded, do_quote=True)
    await refresh_alert(context, store, alert.thread_id)


async def on_case_shortcut(update: Update, context: BotContext) -> None:
    """/case_3f2a9c41 (tapped in /pending)."""
    if await _allowed_command(update, context):
        message = update.effective_message
        match = CASE_SHORTCUT.match((message.text or "") if message is not None else "")
        await _show_case(update, context, match.group(1) if match else "")
    raise ApplicationHandlerStop


async def _show_case(update: Update, context: BotContext, ref: str) -> None:
    """One alert as it is now: the patient's photo (while the alert holds it), then the alert's text with its
    buttons under it; recorded so that it is kept current like the alert."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    if case_ref_digits(ref) is None:
        await message.reply_text(clinician_texts.CASE_USAGE, do_quote=True)
        return
    store = context.bot_data.services.alerts
    found = await asyncio.to_thread(store.for_case_ref, ref)
    if len(found) > 1:
        await message.reply_text(clinician_texts.CASE_AMBIGUOUS.format(job_id=ref.strip()), do_quote=True)
        return
    view = None if not found else await asyncio.to_thread(store.view, found[0].id)
    if view is None:
        await message.reply_text(clinician_texts.CASE_NOT_FOUND.format(job_id=ref.strip()), do_quote=True)
        return
    photo_message, photo_not_attached = await _send_case_photo(message, store, view)
    text = clinician_texts.clinician_alert(
        view, kind=AlertDeliveryKind.CASE.value, photo_not_attached=photo_not_attached
    )
    under = photo_message or message
    sent = await under.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=alert_keyboard(view), do_quote=True)
    await asyncio.to_thread(store.record_case_message, view.alert_id, chat.id, sent.message_id)


async def _send_case_photo(message: Message, store: AlertStore, view: AlertView) -> tuple[Message | None, bool]:
    """The alert's photo, as the alert sent it (the explanation picture is the worker's: not here); returns the
    photo's message, and whether a photo Telegram refused could not be attached."""
    photo = await asyncio.to_thread(store.photo, view.alert_id)
    if photo is None:
        return None, False
    caption = clinician_texts.clinician_photo_caption(view, kind=AlertDeliveryKind.CASE.value)
    try:
        if photo.media_kind == MediaKind.DOCUMENT:
            sent = await message.reply_document(
                photo.file_id, caption=caption, parse_mode=ParseMode.HTML, do_quote=True
            )
        else:
            sent = await message.reply_photo(photo.file_id, caption=caption, parse_mode=ParseMode.HTML, do_quote=True)
    except BadRequest as error:  # a file Telegram no longer has: the text alone, saying so
        log.warning("alert %s: /case photo refused (%s)", view.alert_id, error.message)
        return None, True
    return sent, False


async def on_stats(update: Update, context: BotContext) -> None:
    if await _allowed_command(update, context):
        store = context.bot_data.services.alerts
        now = utc_now()
        today = await asyncio.to_thread(store.count_since, datetime.combine(now.date(), time(), tzinfo=UTC))
        week = await asyncio.to_thread(store.count_since, now - timedelta(days=7))
        times = await asyncio.to_thread(store.review_times, now - timedelta(days=30))
        to_claim = [t.to_claim_s for t in times if t.to_claim_s is not None]
        to_resolution = [t.to_resolution_s for t in times if t.to_resolution_s is not None]
        text = clinician_texts.clinician_stats(today, week, median(to_claim), median(to_resolution))
        assert update.effective_message is not None
        await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, do_quote=True)
    raise ApplicationHandlerStop


def register_clinician_handlers(
    application: Application[Any, Any, Any, Any, Any, Any], allow_list: ClinicianAllowList, group: int = -2
) -> None:
    """Before the consent gate (group -1): clinicians are not patients."""
    clinician_chats = filters.Chat(chat_id=sorted(allow_list.chat_ids))
    commands = clinician_chats & filters.UpdateType.MESSAGE  # an edited command is not asked again
    application.add_handler(CallbackQueryHandler(on_alert_button, pattern=CALLBACK_PATTERN), group=group)
    application.add_handler(CommandHandler("pending", on_pending, filters=commands), group=group)
    application.add_handler(CommandHandler(CASE_COMMAND, on_case, filters=commands), group=group)
    application.add_handler(MessageHandler(commands & filters.Regex(CASE_SHORTCUT), on_case_shortcut), group=group)
    application.add_handler(CommandHandler("stats", on_stats, filters=commands), group=group)
    replies = commands & filters.REPLY & filters.TEXT & ~filters.COMMAND
    application.add_handler(MessageHandler(replies, on_clinician_reply), group=group)  # "Write to the patient"
    application.add_handler(MessageHandler(clinician_chats, on_clinician_chat_message), group=group)
