"""Consent first (GDPR Art. 9): nothing is analysed, and nothing about the patient stored, before they agree
to the current version of the privacy text. /privacy shows it at any time; /delete erases everything.

The gate runs before every other message handler (group -1). A photo sent before consent is held in memory
only (bot/state.py) and analysed, without being resent, once the patient taps "I agree"; "No thanks" drops it.
Callback data: ``consent|agree|<text version>`` and ``consent|decline|<text version>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot.context import BotContext
from bot.durable_updates import key_of
from bot.intake import incoming_image, take_image
from bot.questionnaire import answer_tap, close_questionnaire, edit_unless_unchanged
from bot.state import Questionnaire
from shared.outcomes import FailureCode
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts

log = logging.getLogger(__name__)
CALLBACK_PATTERN = r"^consent\|"


class ConsentChoice(StrEnum):
    AGREE = "agree"
    DECLINE = "decline"


def withdraw_keyboard() -> InlineKeyboardMarkup:
    """Under the privacy text for a patient who agreed: the same choice as "No thanks" (on_consent_choice)."""
    decline = f"consent|{ConsentChoice.DECLINE}|{patient_texts.PRIVACY_VERSION}"
    return InlineKeyboardMarkup([[InlineKeyboardButton(patient_texts.CONSENT_WITHDRAW_BUTTON, callback_data=decline)]])


def consent_keyboard() -> InlineKeyboardMarkup:
    version = patient_texts.PRIVACY_VERSION
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(patient_texts.CONSENT_AGREE_BUTTON, callback_data=f"consent|agree|{version}"),
                InlineKeyboardButton(patient_texts.CONSENT_DECLINE_BUTTON, callback_data=f"consent|decline|{version}"),
            ]
        ]
    )


async def has_consented(chat_id: int, context: BotContext) -> bool:
    consent = await asyncio.to_thread(
        context.bot_data.services.patients.consent,
        context.bot_data.services.chat_ref(chat_id),
        patient_texts.PRIVACY_VERSION,
    )
    return consent is not None


async def ask_for_consent(message: Message) -> None:
    # Not quoted: the photo it may follow is not answered yet (its result will quote it).
    await message.reply_text(
        patient_texts.PRIVACY, parse_mode=ParseMode.HTML, reply_markup=consent_keyboard(), do_quote=False
    )


async def consent_gate(update: Update, context: BotContext) -> None:
    """Any message from a patient who has not agreed to the current text: the privacy question instead."""
    message = update.effective_message
    if message is None or await has_consented(message.chat_id, context):
        return  # on to the handlers of group 0
    store, chat_ref = context.bot_data.services.held_photos, context.bot_data.services.chat_ref(message.chat_id)
    already_asked = False
    if incoming_image(message) is not None:  # held sealed (its file id, no bytes) until the patient decides
        await asyncio.to_thread(store.hold, chat_ref, key_of(update), message.to_dict())
        # One question for a whole album: asked with its first photo held (a replay of that photo asks again).
        already_asked = await asyncio.to_thread(store.held_before, chat_ref, key_of(update))
    if not already_asked:
        await ask_for_consent(message)
    raise ApplicationHandlerStop


async def on_consent_choice(update: Update, context: BotContext) -> None:
    """A tap on "I agree" or "No thanks"."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or query.data is None or chat is None:
        return
    _, choice, version = query.data.split("|", 2)
    if version != patient_texts.PRIVACY_VERSION:  # a button under an older text: show the current one
        await answer_tap(query)
        await query.edit_message_text(patient_texts.PRIVACY, parse_mode=ParseMode.HTML, reply_markup=consent_keyboard())
        return
    chat_ref = context.bot_data.services.chat_ref(chat.id)
    store = context.bot_data.services.held_photos
    held = await asyncio.to_thread(store.held, chat_ref)
    if ConsentChoice(choice) == ConsentChoice.DECLINE:
        await asyncio.to_thread(store.drop, chat_ref)
        await asyncio.to_thread(context.bot_data.services.patients.withdraw_consent, chat_ref)
        # Photos sent under the earlier consent and not analysed yet are never analysed: the workers answer them
        # with CONSENT_WITHDRAWN_IN_PROGRESS (an album's in its one reply). Those analysed get their photo-only
        # result (below). Idempotent: a replayed tap closes nothing more.
        await asyncio.to_thread(
            context.bot_data.services.jobs.close_unanalysed,
            chat_ref,
            FailureCode.CONSENT_WITHDRAWN,
            "consent withdrawn",
        )
        # The tap is answered only once the withdrawal is recorded: under Telegram's flood control every call of
        # the deployment waits (shared/telegram_calls.py), and a worker's retry must not analyse the photo while
        # the withdrawal waits behind the answer to the button.
        await answer_tap(query)
        stored = await asyncio.to_thread(context.bot_data.services.patients.job_count, chat_ref)
        declined = (
            patient_texts.CONSENT_DECLINED_WITH_DATA.format(jobs=stored) if stored else patient_texts.CONSENT_DECLINED
        )
        await edit_unless_unchanged(query.edit_message_text(declined))
        # No new answers once consent is withdrawn: open questionnaires close as skipped (a photo analysed under
        # the earlier consent gets its photo-only result, as if the patient had pressed Skip).
        for questionnaire in _open_questionnaires(context, chat.id):
            await close_questionnaire(context, questionnaire, skipped=True)
        log.info("consent declined; %d held photo(s) dropped", len(held))
        return
    await answer_tap(query)
    await asyncio.to_thread(context.bot_data.services.patients.record_consent, chat_ref, version)
    await edit_unless_unchanged(
        query.edit_message_text(patient_texts.CONSENT_GIVEN_PHOTO_PENDING if held else patient_texts.CONSENT_GIVEN)
    )
    log.info("consent given (text %s); %d held photo(s) to analyse", version, len(held))
    for update_key, message_data in held:
        photo = Message.de_json(message_data, context.bot)
        if photo is not None:
            await take_image(photo, context, update_key=update_key)
        # Let go of each photo only once it is queued: if this fails (the database, the broker), the update is
        # handled again (bot/durable_updates.py) and finds the photos not yet taken; one taken but not let go
        # is found by its update key, not recorded twice.
        await asyncio.to_thread(store.release, update_key)


async def on_privacy(update: Update, context: BotContext) -> None:
    """/privacy: the privacy text at any time; with the buttons while the patient has not agreed to it, and the
    one to withdraw once they have (withdrawing is as easy as agreeing)."""
    message = update.effective_message
    if message is not None:
        consent = await asyncio.to_thread(
            context.bot_data.services.patients.consent,
            context.bot_data.services.chat_ref(message.chat_id),
            patient_texts.PRIVACY_VERSION,
        )
        if consent is None:
            await ask_for_consent(message)
        else:
            agreed = patient_texts.PRIVACY_AGREED.format(date=consent.decided_at.strftime("%Y-%m-%d"))
            await message.reply_text(
                f"{patient_texts.PRIVACY}\n\n{agreed}",
                parse_mode=ParseMode.HTML,
                reply_markup=withdraw_keyboard(),
                do_quote=False,
            )
    raise ApplicationHandlerStop


class DeleteChoice(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"


DELETE_CALLBACK_PATTERN = r"^delete\|"


def delete_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    patient_texts.DELETE_CONFIRM_BUTTON, callback_data=f"delete|{DeleteChoice.CONFIRM}"
                ),
                InlineKeyboardButton(patient_texts.DELETE_CANCEL_BUTTON, callback_data=f"delete|{DeleteChoice.CANCEL}"),
            ]
        ]
    )


async def on_delete(update: Update, context: BotContext) -> None:
    """/delete: asks first (with or without consent); the "Erase everything" button erases."""
    message = update.effective_message
    if message is not None:
        jobs = await asyncio.to_thread(
            context.bot_data.services.patients.job_count, context.bot_data.services.chat_ref(message.chat_id)
        )
        await message.reply_text(
            patient_texts.DELETE_CONFIRM.format(jobs=jobs),
            parse_mode=ParseMode.HTML,
            reply_markup=delete_keyboard(),
            do_quote=True,
        )
    raise ApplicationHandlerStop


async def on_delete_choice(update: Update, context: BotContext) -> None:
    """ "Erase everything": erase every row about this patient (tombstones stay, unlinkable), and forget what the
    bot holds in memory for them. "Keep my data": nothing happens."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or query.data is None or chat is None:
        return
    await answer_tap(query)
    if query.data.split("|", 1)[1] != DeleteChoice.CONFIRM:
        await query.edit_message_text(patient_texts.DELETE_CANCELLED)
        return
    mine = _open_questionnaires(context, chat.id)
    # Their photos will get no result (the jobs are closed as erased): their "analysing..." messages say so,
    # every one still waiting (albums, questionnaires closed or lost with a restart). Read before the erasure,
    # which erases the sealed delivery data that holds them.
    services = context.bot_data.services
    chat_ref = services.chat_ref(chat.id)
    in_progress = await asyncio.to_thread(services.jobs.unanswered_status_messages, chat_ref)
    erased = await asyncio.to_thread(services.patients.erase_patient, chat_ref)
    await asyncio.to_thread(services.held_photos.drop, chat_ref)
    for questionnaire in mine:
        context.bot_data.questionnaires.pop(questionnaire.job_id, None)
        if questionnaire.message_id is not None:
            with contextlib.suppress(TelegramError):
                await context.bot.edit_message_text(
                    questionnaire_texts.QUESTIONNAIRE_CLOSED, chat_id=chat.id, message_id=questionnaire.message_id
                )
    for message_id in in_progress:
        with contextlib.suppress(TelegramError):
            await context.bot.edit_message_text(
                patient_texts.ERASED_IN_PROGRESS, chat_id=chat.id, message_id=message_id
            )
    await query.edit_message_text(patient_texts.DELETED.format(jobs=erased))
    log.info("patient erased: %d job(s) tombstoned", erased)


def _open_questionnaires(context: BotContext, chat_id: int) -> list[Questionnaire]:
    """The questionnaires in progress in this chat (a copy: closing them changes the registry)."""
    return [q for q in context.bot_data.questionnaires.values() if q.chat_id == chat_id]
