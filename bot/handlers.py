"""One small handler per intent, registered in one place.

Group -2 holds the clinicians' buttons and commands (bot/clinician_commands.py, bot/clinician_presses.py:
clinician chats are not patients);
group -1 first turns away every other group chat (bot/private_chats.py: patients are served in private chats
only), then holds /about, /privacy, /history, /delete and the consent gate (which stops every other message
from a patient who has not agreed); group 0 the handlers of a consenting patient's messages and the
buttons' callbacks."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot import consent, history, questionnaire, spots
from bot.clinician_access import CLINICIAN_COMMANDS
from bot.clinician_commands import register_clinician_handlers
from bot.context import BotContext
from bot.fairness import AdmissionHandler
from bot.intake import on_image_document, on_photo
from bot.private_chats import SharedChatHandler
from shared.clinic.buttons import ClinicianAllowList
from shared.spot_followups import CALLBACK_PATTERN as SPOT_CALLBACK_PATTERN
from shared.texts import patient as patient_texts
from shared.texts.patient import MAX_FILE_MB

log = logging.getLogger(__name__)


async def on_start(update: Update, context: BotContext) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(patient_texts.START)


async def on_help(update: Update, context: BotContext) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(patient_texts.help_text(MAX_FILE_MB))


async def on_about(update: Update, context: BotContext) -> None:
    """/about: what SkinSense is and is not, and the full disclaimer; answered with or without consent."""
    if update.effective_message:
        await update.effective_message.reply_text(patient_texts.ABOUT, parse_mode=ParseMode.HTML, do_quote=False)
    raise ApplicationHandlerStop


async def on_unsupported(update: Update, context: BotContext) -> None:
    """Text, stickers, voice, video and anything else: a short, kind pointer to what works."""
    message = update.effective_message
    if message:
        await message.reply_text(
            patient_texts.NOT_A_PHOTO_TEXT if message.text else patient_texts.NOT_A_PHOTO, do_quote=True
        )


async def on_error(update: object, context: BotContext) -> None:
    # The whole traceback: shared.logs' filter blanks the token out of it (request URLs carry the token).
    log.error("error while handling an update", exc_info=context.error)


# Only new messages: an edited one (a caption corrected, a typo fixed) is not a new photo or a new request.
NEW_MESSAGES = filters.UpdateType.MESSAGE


def register_handlers(application: Application[Any, Any, Any, Any, Any, Any], allow_list: ClinicianAllowList) -> None:
    application.add_handler(AdmissionHandler(), group=-3)  # a chat past its allowance: dropped (bot/fairness.py)
    register_clinician_handlers(
        application, allow_list, group=-2
    )  # clinicians are not patients: before the consent gate
    application.add_handler(SharedChatHandler(allow_list.chat_ids), group=-1)  # patients: private chats only
    application.add_handler(CommandHandler("about", on_about, filters=NEW_MESSAGES), group=-1)
    application.add_handler(CommandHandler("privacy", consent.on_privacy, filters=NEW_MESSAGES), group=-1)
    application.add_handler(CommandHandler("history", history.on_history, filters=NEW_MESSAGES), group=-1)
    application.add_handler(CommandHandler("reminders", spots.on_reminders, filters=NEW_MESSAGES), group=-1)
    application.add_handler(CommandHandler("delete", consent.on_delete, filters=NEW_MESSAGES), group=-1)
    application.add_handler(MessageHandler(NEW_MESSAGES, consent.consent_gate), group=-1)
    application.add_handler(CallbackQueryHandler(consent.on_consent_choice, pattern=consent.CALLBACK_PATTERN))
    application.add_handler(CallbackQueryHandler(consent.on_delete_choice, pattern=consent.DELETE_CALLBACK_PATTERN))
    application.add_handler(CallbackQueryHandler(history.on_history_choice, pattern=history.CALLBACK_PATTERN))
    application.add_handler(CallbackQueryHandler(spots.on_spot_choice, pattern=SPOT_CALLBACK_PATTERN))
    application.add_handler(CallbackQueryHandler(questionnaire.on_answer, pattern=questionnaire.CALLBACK_PATTERN))
    application.add_handler(CommandHandler("start", on_start, filters=NEW_MESSAGES))
    application.add_handler(CommandHandler("help", on_help, filters=NEW_MESSAGES))
    # From a patient: the patient's help.
    application.add_handler(CommandHandler(CLINICIAN_COMMANDS, on_help, filters=NEW_MESSAGES))
    application.add_handler(MessageHandler(NEW_MESSAGES & filters.PHOTO, on_photo))
    application.add_handler(MessageHandler(NEW_MESSAGES & filters.Document.ALL, on_image_document))
    application.add_handler(MessageHandler(NEW_MESSAGES, on_unsupported))
    application.add_error_handler(on_error)
