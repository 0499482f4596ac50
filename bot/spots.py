"""The same spot over time, on the patient's side (shared/spot_followups.py has the whole story):

- "Remind me to photograph it again" under a LOW or MEDIUM result: a separate opt-in (a reminder is a message
  the patient did not ask for at that moment). The earlier photo is the one the result replies to; its Telegram
  file id is kept sealed with the reminder, never the photo itself. The button must be under this patient's own
  result, of that very photo (its file_unique_id is the job's), or nothing is stored.
- "Stop reminders" under a reminder, and /reminders (each reminder, and a button to stop them all).

Nothing is set for a patient who has not agreed to the current privacy text.
"""

from __future__ import annotations

import asyncio
import uuid

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ApplicationHandlerStop

from bot.context import BotContext
from bot.questionnaire import answer_tap
from shared.audit import utc_now
from shared.spot_followups import REMIND_CALLBACK, STOP_CALLBACK, FollowupContact, reminder_delay
from shared.texts import patient as patient_texts

STOP_ALL = "all"


async def on_spot_choice(update: Update, context: BotContext) -> None:
    """A press on "Remind me to photograph it again" or "Stop reminders"."""
    query, chat = update.callback_query, update.effective_chat
    if query is None or query.data is None or chat is None:
        raise ApplicationHandlerStop
    if query.data.startswith(REMIND_CALLBACK):
        text = await _set_reminder(query, chat.id, query.data.removeprefix(REMIND_CALLBACK), context)
    else:
        text = await _stop(chat.id, query.data.removeprefix(STOP_CALLBACK), context)
        if isinstance(query.message, Message):
            await query.message.edit_reply_markup(reply_markup=None)
    await answer_tap(query)
    await context.bot.send_message(chat.id, text)
    raise ApplicationHandlerStop


async def _set_reminder(query: CallbackQuery, chat_id: int, job_hex: str, context: BotContext) -> str:
    services = context.bot_data.services
    chat_ref = services.chat_ref(chat_id)
    photo = _photo_under(query.message)
    try:
        job_id = uuid.UUID(job_hex)
    except ValueError:
        return patient_texts.REMINDER_NOT_POSSIBLE
    job = await asyncio.to_thread(services.patients.result, chat_ref, job_id)
    consented = await asyncio.to_thread(services.patients.consent, chat_ref, patient_texts.PRIVACY_VERSION)
    delay = None
    if job is not None and job.risk is not None:
        settings = services.settings
        delay = reminder_delay(
            job.risk,
            after_low_days=settings.reminder_after_low_days,
            after_medium_days=settings.reminder_after_medium_days,
        )
    if job is None or consented is None or delay is None or photo is None or photo[1] != job.telegram_file_unique_id:
        return patient_texts.REMINDER_NOT_POSSIBLE
    remind_at = utc_now() + delay
    contact = FollowupContact(chat_id=chat_id, file_id=photo[0])
    await asyncio.to_thread(services.followups.create, chat_ref, job.id, contact, remind_at)
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)  # asked once; /reminders stops it
    return patient_texts.REMINDER_SET.format(date=f"{remind_at:%d %B %Y}")


def _photo_under(message: object) -> tuple[str, str] | None:
    """(file id, file_unique_id) of the patient's photo that the result message replies to."""
    if not isinstance(message, Message) or message.reply_to_message is None:
        return None
    original = message.reply_to_message
    if original.photo:
        return original.photo[-1].file_id, original.photo[-1].file_unique_id
    if original.document is not None:
        return original.document.file_id, original.document.file_unique_id
    return None


async def _stop(chat_id: int, which: str, context: BotContext) -> str:
    services = context.bot_data.services
    chat_ref = services.chat_ref(chat_id)
    if which == STOP_ALL:
        await asyncio.to_thread(services.followups.stop, chat_ref)
        return patient_texts.REMINDERS_ALL_STOPPED
    try:
        followup_id = uuid.UUID(which)
    except ValueError:
        return patient_texts.REMINDER_NOT_POSSIBLE
    await asyncio.to_thread(services.followups.stop, chat_ref, followup_id)  # only this chat's: by its reference
    return patient_texts.REMINDER_STOPPED


async def on_reminders(update: Update, context: BotContext) -> None:
    """/reminders: the patient's reminders, with a button to stop them all."""
    message = update.effective_message
    if message is not None:
        services = context.bot_data.services
        chat_ref = services.chat_ref(message.chat_id)
        followups = await asyncio.to_thread(services.followups.active, chat_ref)
        entries = []
        for followup in followups:
            job = await asyncio.to_thread(services.patients.result, chat_ref, followup.job_id)
            if job is not None:
                entries.append((job.received_at, followup.remind_at, followup.prompt_message_id is not None))
        if not entries:
            await message.reply_text(patient_texts.REMINDERS_NONE, do_quote=False)
        else:
            stop = InlineKeyboardButton(patient_texts.REMINDERS_STOP_ALL_BUTTON, callback_data=STOP_CALLBACK + STOP_ALL)
            await message.reply_text(
                patient_texts.reminders_list(entries), reply_markup=InlineKeyboardMarkup([[stop]]), do_quote=False
            )
    raise ApplicationHandlerStop
