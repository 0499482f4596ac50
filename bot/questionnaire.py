"""The questionnaire, asked with inline buttons while the worker analyses the photo.

Two pages in one message: "about you" (age, sex, where the spot is; for a returning patient, "still right?"
and where the spot is) and "about the spot" (grown, changed, bleeds, itches, hurts, raised: yes or no). A tap is
acknowledged with a short note ("Noted: age 40-49"), not an edit: every message and edit counts against the
bot's Telegram allowance (about 30 a second in all), so the questionnaire costs one message and two edits (the
second page, the close) however many questions are answered. The page shows what was noted when it changes,
and the close lists every answer. A question left out stays unknown (changes nothing); "Next" / "Done" moves on
without it, "Skip" ends the questions (the photo-only result). Each tap saves the answers so far on the job row;
when the questionnaire closes the bot queues the final result if the analysis is already done; otherwise the
worker finalizes when it is (worker/flow.py). Age and sex are remembered for the next photo.

Callback data: ``q|<job id hex>|<question>|<value>`` (at most 64 bytes, as Telegram allows).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Awaitable

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.context import BotContext
from bot.state import Page, Questionnaire
from shared.answers import PatientAnswers, Sex
from shared.audit import Job, JobStatus
from shared.job_store import asks_no_questions
from shared.metrics import PRESSES_REFUSED
from shared.questionnaire import (
    YES_NO_QUESTIONS,
    AgeRange,
    Question,
    YesNo,
    answers_from_record,
    site_token,
)
from shared.queue import FinalizeResultRequest, enqueue_finalization
from shared.telegram_calls import is_not_modified
from shared.texts import questionnaire as questionnaire_texts

log = logging.getLogger(__name__)
CALLBACK_PREFIX = "q"
CALLBACK_PATTERN = r"^q\|"
SKIP = "skip"
NEXT = "next"  # "Next" on the first page, "Done" on the second: on without the questions left out


def _button(questionnaire: Questionnaire, question: Question | str, value: str, label: str) -> InlineKeyboardButton:
    data = f"{CALLBACK_PREFIX}|{questionnaire.job_id.hex}|{question}|{value}"
    return InlineKeyboardButton(label, callback_data=data)


def _rows(buttons: list[InlineKeyboardButton], width: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def keyboard(questionnaire: Questionnaire) -> InlineKeyboardMarkup:
    """The current page's buttons: every question's answers, then "Next" (or "Done") and "Skip"."""

    def b(question: Question, value: str, label: str) -> InlineKeyboardButton:
        return _button(questionnaire, question, value, label)

    layout: list[list[InlineKeyboardButton]] = []
    for question in questionnaire.page_questions:
        if question == Question.CONFIRM_PROFILE:
            layout.append(
                [b(question, choice.value, label) for choice, label in questionnaire_texts.PROFILE_BUTTONS.items()]
            )
        elif question == Question.AGE:
            layout += _rows(
                [b(question, age.value, label) for age, label in questionnaire_texts.AGE_BUTTONS.items()], 4
            )
        elif question == Question.SEX:
            layout.append([b(question, sex.value, label) for sex, label in questionnaire_texts.SEX_BUTTONS.items()])
        elif question == Question.BODY_SITE:
            sites = [
                b(question, site_token(site), label) for site, label in questionnaire_texts.BODY_SITE_BUTTONS.items()
            ]
            layout += _rows(sites, 4)
        else:
            yes, no = questionnaire_texts.SPOT_BUTTONS[question]
            layout.append([b(question, YesNo.YES.value, yes), b(question, YesNo.NO.value, no)])
    onwards = questionnaire_texts.DONE_BUTTON if questionnaire.on_last_page else questionnaire_texts.NEXT_BUTTON
    layout.append(
        [_button(questionnaire, NEXT, "-", onwards), _button(questionnaire, SKIP, "-", questionnaire_texts.SKIP_BUTTON)]
    )
    return InlineKeyboardMarkup(layout)


def page_text(questionnaire: Questionnaire) -> str:
    profile = questionnaire_texts.remembered_profile(questionnaire.remembered_age, questionnaire.remembered_sex)
    if questionnaire.page == Page.ABOUT_YOU:
        return questionnaire_texts.questionnaire_about_you(profile if questionnaire.confirming_profile else "")
    return questionnaire_texts.questionnaire_about_the_spot(noted(questionnaire))


def noted(questionnaire: Questionnaire) -> str:
    """ "age 40-49, female, on the back; grown: yes": what the patient told us so far, as the pages show it."""
    return questionnaire_texts.answers_noted(
        questionnaire.age_range, questionnaire.sex, questionnaire.body_site, questionnaire.spot
    )


async def remembered_profile(context: BotContext, chat_ref: str) -> tuple[AgeRange | None, Sex | None]:
    """The age range and sex the patient gave last time, offered back ("still right?")."""
    profile = await asyncio.to_thread(context.bot_data.services.patients.profile, chat_ref)
    remembered_age = AgeRange(profile.age_range) if profile and profile.age_range else None
    remembered_sex = Sex(profile.sex) if profile and profile.sex else None
    return remembered_age, remembered_sex


async def start_questionnaire(
    context: BotContext, job_id: uuid.UUID, chat_id: int, chat_ref: str, photo_message_id: int
) -> None:
    """Ask the first question about a photo whose analysis is already queued, as a reply to the photo: with
    several photos on their way, each questionnaire shows which spot it asks about. Not for a photo already
    answered without questions (refused, the same photo again: the worker is quick); one answered so while the
    first question went out is closed here or by the worker (JobStore.set_questionnaire_message)."""
    store = context.bot_data.services.jobs
    job = await asyncio.to_thread(store.load, job_id)
    if job is None or asks_no_questions(job):
        return
    remembered_age, remembered_sex = await remembered_profile(context, chat_ref)
    questionnaire = Questionnaire(
        job_id,
        chat_id,
        chat_ref,
        remembered_age,
        remembered_sex,
        confirming_profile=remembered_age is not None or remembered_sex is not None,
    )
    sent = await context.bot.send_message(
        chat_id,
        page_text(questionnaire),
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard(questionnaire),
        reply_parameters=ReplyParameters(photo_message_id, allow_sending_without_reply=True),
    )
    questionnaire.message_id = sent.message_id
    try:
        job = await asyncio.to_thread(store.set_questionnaire_message, job_id, sent.message_id)
    except LookupError:  # erased meanwhile (/delete)
        job = None
    if job is None or asks_no_questions(job):  # answered (or erased) while the questions went out: withdrawn
        try:
            await context.bot.delete_message(chat_id, sent.message_id)
        except BadRequest:
            await edit_unless_unchanged(
                context.bot.edit_message_text(
                    questionnaire_texts.QUESTIONNAIRE_NOT_NEEDED, chat_id=chat_id, message_id=sent.message_id
                )
            )
        return
    context.bot_data.questionnaires[questionnaire.job_id] = questionnaire


async def on_answer(update: Update, context: BotContext) -> None:
    """A tap on one of the questionnaire's buttons. The job named by the button must be the pressing chat's: the
    questionnaire's chat, and its job row's chat reference (a custom client can send any callback data, such as
    another patient's job id); any other press is answered with a short refusal and changes nothing, not even the
    message it came from."""
    query, chat = update.callback_query, update.effective_chat
    if query is None or query.data is None:
        return
    try:
        _, job_hex, question_token, value = query.data.split("|", 3)
        job_id: uuid.UUID | None = uuid.UUID(job_hex)
    except ValueError:  # not a button of ours
        job_id, question_token, value = None, "", ""
    chat_ref = None if chat is None else context.bot_data.services.chat_ref(chat.id)
    questionnaire = None if job_id is None else context.bot_data.questionnaires.get(job_id)
    job: Job | None = None
    if questionnaire is not None:
        owned = chat is not None and questionnaire.chat_id == chat.id and questionnaire.chat_ref == chat_ref
    else:  # closed (timed out, answered, erased) or forgotten with a restart: the row says whose it is
        job = (
            None
            if job_id is None or chat is None
            else await asyncio.to_thread(context.bot_data.services.jobs.load, job_id)
        )
        owned = job is not None and job.chat_ref == chat_ref
    if not owned:
        PRESSES_REFUSED.labels(buttons="questionnaire", why="not_this_chat").inc()
        log.warning("questionnaire press refused: job %s is not the pressing chat's", job_id)
        try:
            await query.answer(text=questionnaire_texts.QUESTIONNAIRE_NOT_YOURS)
        except BadRequest as error:  # too old to answer (a replayed update): nothing else to do
            log.info("callback query not answered: %s", error.message)
        return
    assert job_id is not None
    questionnaire = context.bot_data.questionnaires.get(job_id)  # as it is now, after the await
    if questionnaire is None and job is not None and chat is not None and chat_ref is not None:
        # Not in this process's memory: the bot restarted, or another replica asked it. The job row (read above)
        # holds the answers so far; the pressed message shows the page.
        questionnaire = await rebuilt(context, job, chat.id, chat_ref, query)
    if questionnaire is None:  # closed (timed out, answered, erased)
        await answer_tap(query, questionnaire_texts.QUESTIONNAIRE_CLOSED)
        if query.message is not None and getattr(query.message, "reply_markup", None):  # still shows live buttons
            await edit_unless_unchanged(query.edit_message_text(questionnaire_texts.QUESTIONNAIRE_CLOSED))
        return
    if isinstance(query.message, Message) and query.message.message_id != questionnaire.message_id:
        questionnaire.copies.add(query.message.message_id)  # a second copy of the questions (see Questionnaire)
    if question_token == SKIP:
        await answer_tap(query)
        await close_questionnaire(context, questionnaire, skipped=True)
        return
    # Recorded on a copy, kept only once saved: a tap whose save fails is handled again (bot/durable_updates.py)
    # and finds the questionnaire as it was, rather than an answer lost.
    answered = copy.deepcopy(questionnaire)
    toast: str | None = None
    redraw = False
    if question_token == NEXT:
        if answered.on_last_page:
            await answer_tap(query)
            await close_questionnaire(context, answered, skipped=False)
            return
        answered.next_page()
        redraw = True
    else:
        question = Question(question_token) if question_token in set(Question) else None
        if question is None or question not in answered.page_questions:
            # A tap on a page no longer shown (a double tap racing the page change): show the current page.
            await answer_tap(query)
            await show_page(query, questionnaire)
            return
        answered.record(question, value)
        toast = questionnaire_texts.noted_toast(question, value)
        redraw = question == Question.CONFIRM_PROFILE and not answered.confirming_profile  # "Change": age and sex
        if answered.page_answered:
            if answered.on_last_page:
                await answer_tap(query, toast)
                await close_questionnaire(context, answered, skipped=False)
                return
            answered.next_page()
            redraw = True
    try:
        job = await asyncio.to_thread(
            context.bot_data.services.jobs.record_answers, answered.job_id, answered.answers(), close=False
        )
    except LookupError:  # the patient erased everything meanwhile
        job = None
    if job is None or job.status in (JobStatus.REJECTED, JobStatus.FAILED) or job.answers_closed_at is not None:
        # Erased, refused (the patient already has the reason) or timed out: no point in asking on.
        context.bot_data.questionnaires.pop(questionnaire.job_id, None)
        await answer_tap(query, questionnaire_texts.QUESTIONNAIRE_CLOSED)
        return
    context.bot_data.questionnaires[answered.job_id] = answered
    if redraw:  # the new page first: the tap's answer tells the patient it is there
        await show_page(query, answered)
    await answer_tap(query, toast)


async def rebuilt(
    context: BotContext, job: Job, chat_id: int, chat_ref: str, query: CallbackQuery
) -> Questionnaire | None:
    """The questionnaire of a job still waiting for its answers, from its row (the answers so far) and the
    pressed message (its page); None when it is closed. Kept in memory from then on."""
    message = query.message
    if asks_no_questions(job) or not isinstance(message, Message):
        return None
    shown = {
        (button.callback_data or "").split("|")[2]
        for row in (message.reply_markup.inline_keyboard if message.reply_markup else ())
        for button in row
        if isinstance(button.callback_data, str) and button.callback_data.count("|") == 3
    }
    if not shown:  # the message no longer shows the questions
        return None
    questionnaire = Questionnaire(job.id, chat_id, chat_ref, message_id=message.message_id)
    delivery = context.bot_data.services.jobs.delivery_of(job)
    recorded = None if delivery is None else delivery.questionnaire_message_id
    if recorded is not None and recorded != message.message_id:
        questionnaire.copies.add(recorded)  # the copy the row names, closed with this one
    questionnaire.page = Page.ABOUT_THE_SPOT if shown & {q.value for q in YES_NO_QUESTIONS} else Page.ABOUT_YOU
    questionnaire.confirming_profile = Question.CONFIRM_PROFILE.value in shown
    if questionnaire.confirming_profile:
        questionnaire.remembered_age, questionnaire.remembered_sex = await remembered_profile(context, chat_ref)
    questionnaire.restore(answers_from_record(job.answers))
    context.bot_data.questionnaires[job.id] = questionnaire
    log.info("job %s: questionnaire taken up again from its row", job.id)
    return questionnaire


async def show_page(query: CallbackQuery, questionnaire: Questionnaire) -> None:
    """Edit the questionnaire's message to its current page."""
    await edit_unless_unchanged(
        query.edit_message_text(
            page_text(questionnaire), parse_mode=ParseMode.HTML, reply_markup=keyboard(questionnaire)
        )
    )


async def close_questionnaire(context: BotContext, questionnaire: Questionnaire, *, skipped: bool) -> None:
    """Save the final answers (none when skipped), remember age and sex, and queue the result if the photo is
    already analysed (otherwise the worker finalizes it when the analysis ends)."""
    answers = PatientAnswers() if skipped else questionnaire.answers()
    chat_id = questionnaire.chat_id
    try:
        job = await asyncio.to_thread(
            context.bot_data.services.jobs.record_answers, questionnaire.job_id, answers, close=True
        )
    except LookupError:
        job = None
    # Forgotten once saved: a save that fails leaves the questionnaire open for the tap's retry.
    context.bot_data.questionnaires.pop(questionnaire.job_id, None)
    if job is not None and questionnaire.asked_profile and not skipped:
        await asyncio.to_thread(
            context.bot_data.services.patients.remember_profile,
            questionnaire.chat_ref,
            questionnaire.age_range,
            questionnaire.sex,
        )
    if job is None or job.status in (JobStatus.REJECTED, JobStatus.FAILED) or job.replied_at is not None:
        text = questionnaire_texts.QUESTIONNAIRE_CLOSED  # erased, refused, or answered already (the timeout)
    else:
        text = (
            questionnaire_texts.QUESTIONNAIRE_SKIPPED
            if skipped
            else questionnaire_texts.questionnaire_done(noted(questionnaire))
        )
    for message_id in sorted(questionnaire.shown_in):
        await edit_unless_unchanged(context.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id))
    if job is not None and job.status == JobStatus.DONE and job.replied_at is None:
        # The analysis finished first and is waiting for us: the result goes out now.
        try:
            await asyncio.to_thread(enqueue_finalization, FinalizeResultRequest(job_id=job.id))
        except Exception as error:  # the worker's timeout still answers the patient
            log.error("job %s: could not queue the final result: %s", job.id, type(error).__name__)
    log.info("job %s: questionnaire %s", questionnaire.job_id, "skipped" if skipped else "answered")


async def answer_tap(query: CallbackQuery, text: str | None = None) -> None:
    """Stop the button's spinner, with a short note (``text``) if given. Best effort: on a replayed update
    (bot/durable_updates.py) Telegram may say the query is too old, and the tap must still be handled."""
    try:
        await query.answer(text)
    except BadRequest as error:
        log.info("callback query not answered: %s", error.message)


async def edit_unless_unchanged(edit: Awaitable[object]) -> None:
    """Await an edit; "message is not modified" (a double tap) is not an error."""
    try:
        await edit
    except BadRequest as error:
        if not is_not_modified(error):
            raise
