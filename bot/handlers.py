"""One small handler per intent. The bot validates what it can without downloading, records the job,
answers "analysing..." and enqueues the work; it never runs the model and never sends image bytes to
the broker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from telegram import Message, Update
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from shared import messages
from shared.audit import MediaKind, chat_reference, utc_now
from shared.config import get_settings
from shared.images import MAX_FILE_BYTES, MIN_SIDE
from shared.job_store import get_job_store
from shared.messages import MAX_FILE_MB
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.queue import ClassifyPhotoRequest, enqueue_classification

log = logging.getLogger(__name__)
ACCEPTED_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"})


@dataclass(frozen=True)
class IncomingImage:
    kind: MediaKind
    file_id: str
    file_unique_id: str
    file_size: int | None
    width: int | None = None
    height: int | None = None


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(messages.START)


async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(messages.help_text(MAX_FILE_MB))


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or not message.photo:
        return
    largest = message.photo[-1]
    await accept_image(
        message,
        IncomingImage(
            MediaKind.PHOTO, largest.file_id, largest.file_unique_id, largest.file_size, largest.width, largest.height
        ),
    )


async def on_image_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or message.document is None:
        return
    document = message.document
    image = IncomingImage(MediaKind.DOCUMENT, document.file_id, document.file_unique_id, document.file_size)
    if document.mime_type not in ACCEPTED_IMAGE_TYPES:
        reason = f"document of type {document.mime_type or 'unknown'}"
        await reject(message, image, Refusal(RefusalCode.NOT_AN_IMAGE, reason))
        return
    await accept_image(message, image)


async def on_unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text, stickers, voice, video and anything else: a short, kind pointer to what works."""
    if update.effective_message:
        await update.effective_message.reply_text(messages.NOT_A_PHOTO, do_quote=True)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # The whole traceback: shared.logs' filter blanks the token out of it (request URLs carry the token).
    log.error("error while handling an update", exc_info=context.error)


async def accept_image(message: Message, image: IncomingImage) -> None:
    if image.file_size is not None and image.file_size > MAX_FILE_BYTES:
        await reject(message, image, Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_FILE_MB} MB"))
        return
    if image.width is not None and image.height is not None and min(image.width, image.height) < MIN_SIDE:
        reason = f"the image is only {image.width}x{image.height} pixels"
        await reject(message, image, Refusal(RefusalCode.TOO_SMALL, reason))
        return
    store = get_job_store()
    job = await asyncio.to_thread(
        store.record_received,
        chat_ref=_chat_ref(message),
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
    )
    status_message = await message.reply_text(messages.ANALYSING, do_quote=True)
    request = ClassifyPhotoRequest(
        job_id=job.id,
        chat_id=message.chat_id,
        status_message_id=status_message.message_id,
        file_id=image.file_id,
        media_kind=image.kind,
    )
    queued_at = utc_now()  # taken before sending: the task may start before send_task returns
    try:
        await asyncio.to_thread(enqueue_classification, request)
    except Exception as error:  # broker down: record it and tell the patient to resend
        log.error("job %s: enqueue failed: %s", job.id, type(error).__name__)
        reason = f"broker unavailable ({type(error).__name__})"
        await asyncio.to_thread(store.mark_failed, job.id, FailureCode.ENQUEUE_FAILED, reason)
        await status_message.edit_text(messages.failure(FailureCode.ENQUEUE_FAILED))
        await asyncio.to_thread(store.mark_replied, job.id)
        return
    await asyncio.to_thread(store.mark_enqueued, job.id, queued_at=queued_at)
    log.info("job %s: queued", job.id)


async def reject(message: Message, image: IncomingImage, refusal: Refusal) -> None:
    store = get_job_store()
    job = await asyncio.to_thread(
        store.record_refused,
        chat_ref=_chat_ref(message),
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
        refusal=refusal,
    )
    await message.reply_text(messages.rejection(refusal.code, MAX_FILE_MB), do_quote=True)
    await asyncio.to_thread(store.mark_replied, job.id)
    log.info("job %s: rejected (%s)", job.id, refusal.code)


def _chat_ref(message: Message) -> str:
    return chat_reference(message.chat_id, get_settings().chat_hash_key.get_secret_value())


def register_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(CommandHandler("start", on_start))
    application.add_handler(CommandHandler("help", on_help))
    application.add_handler(MessageHandler(filters.PHOTO, on_photo))
    application.add_handler(MessageHandler(filters.Document.ALL, on_image_document))
    application.add_handler(MessageHandler(filters.ALL, on_unsupported))
    application.add_error_handler(on_error)
