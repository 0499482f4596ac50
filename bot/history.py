"""/history: the patient's past results (date, risk, most likely type, photo kind), newest first, the last
HISTORY_LENGTH; a button per result shows it again in full, as it was sent.

Callback data: ``history|<job id hex>``. The job must belong to the chat that taps (checked by its chat
reference), so a forged button cannot show anyone else's result.
"""

from __future__ import annotations

import asyncio
import uuid

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ApplicationHandlerStop

from bot.context import BotContext
from bot.questionnaire import answer_tap
from shared.texts import result as result_texts

CALLBACK_PREFIX = "history"
CALLBACK_PATTERN = r"^history\|"
BUTTONS_PER_ROW = 5


async def on_history(update: Update, context: BotContext) -> None:
    """/history: the list, with a button per result (answered with or without consent: without, it is empty)."""
    message = update.effective_message
    if message is not None:
        jobs = await asyncio.to_thread(
            context.bot_data.services.patients.results, context.bot_data.services.chat_ref(message.chat_id)
        )
        entries = [
            result_texts.history_entry(number, job.received_at, result_texts.PatientResult.of_job(job))
            for number, job in enumerate(jobs, start=1)
        ]
        buttons = [
            InlineKeyboardButton(str(number), callback_data=f"{CALLBACK_PREFIX}|{job.id.hex}")
            for number, job in enumerate(jobs, start=1)
        ]
        rows = [buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]
        await message.reply_text(
            result_texts.history(entries),
            parse_mode=ParseMode.HTML,
            reply_markup=InlineKeyboardMarkup(rows) if rows else None,
            do_quote=False,
        )
    raise ApplicationHandlerStop


async def on_history_choice(update: Update, context: BotContext) -> None:
    """A tap on a result's number: that result in full, as a new message."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or query.data is None or chat is None:
        return
    await answer_tap(query)
    try:
        job_id = uuid.UUID(query.data.split("|", 1)[1])
    except ValueError:
        return  # not a button of ours
    job = await asyncio.to_thread(
        context.bot_data.services.patients.result, context.bot_data.services.chat_ref(chat.id), job_id
    )
    text = (
        result_texts.HISTORY_GONE
        if job is None
        else result_texts.past_result(job.received_at, result_texts.PatientResult.of_job(job))
    )
    await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
