"""/history: the patient's past results (date, risk, most likely type, photo kind), newest first, the last
HISTORY_LENGTH, the photos of one spot together (a photo sent in reply to its reminder joins the earlier one);
a button per result shows it again in full, as it was sent.

Callback data: ``history|<job id hex>``. The job must belong to the chat that taps (checked by its chat
reference), so a forged button cannot show anyone else's result.
"""

from __future__ import annotations

import asyncio
import re
import uuid

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ApplicationHandlerStop

from bot.context import BotContext
from bot.patients import PatientStore
from bot.questionnaire import answer_tap
from shared.audit import Job
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
        ordered = [job for group in spot_groups(jobs) for job in group]
        entries = []
        number = 0
        for group in spot_groups(jobs):
            if len(group) > 1:
                entries.append(result_texts.HISTORY_SPOT.format(count=len(group)))
            for job in group:
                number += 1
                entry = result_texts.history_entry(number, job.received_at, result_texts.PatientResult.of_job(job))
                entries.append(f"    {entry}" if len(group) > 1 else entry)
        buttons = [
            InlineKeyboardButton(str(number), callback_data=f"{CALLBACK_PREFIX}|{job.id.hex}")
            for number, job in enumerate(ordered, start=1)
        ]
        rows = [buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]
        await message.reply_text(
            result_texts.history(entries),
            parse_mode=ParseMode.HTML,
            reply_markup=InlineKeyboardMarkup(rows) if rows else None,
            do_quote=False,
        )
    raise ApplicationHandlerStop


SAME_SPOT = re.compile(r"\bsame(?:\s+spot)?\s+as\s+(?:number\s+|no\.?\s*|#)?(\d{1,2})\b", re.IGNORECASE)


def same_spot_number(caption: str | None) -> int | None:
    """N from a photo's caption "same as N" (or "same spot as N", "same as #N"): a new photo of result N."""
    match = SAME_SPOT.search(caption or "")
    return None if match is None else int(match.group(1))


def history_result_id(patients: PatientStore, chat_ref: str, number: int) -> uuid.UUID | None:
    """The job of result ``number`` as /history numbers them (None: no such result)."""
    ordered = [job for group in spot_groups(patients.results(chat_ref)) for job in group]
    return ordered[number - 1].id if 1 <= number <= len(ordered) else None


def spot_groups(jobs: list[Job]) -> list[list[Job]]:
    """The results grouped by spot, newest spot first, each spot's photos newest first: a photo sent in reply to a
    reminder (``same_spot_as``) joins its earlier photo's spot."""
    by_id = {job.id: job for job in jobs}

    def first_photo(job: Job) -> uuid.UUID:
        seen = {job.id}
        while job.same_spot_as in by_id and job.same_spot_as not in seen:
            job = by_id[job.same_spot_as]
            seen.add(job.id)
        return job.id

    groups: dict[uuid.UUID, list[Job]] = {}
    for job in jobs:  # newest first
        groups.setdefault(first_photo(job), []).append(job)
    return list(groups.values())


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
