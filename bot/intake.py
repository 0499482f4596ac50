"""Photo intake, once the patient has consented: the bot validates what it can without downloading, records
the job, answers "analysing...", enqueues the analysis and starts the questionnaire while the worker works.
It never runs the model and never sends image bytes to the broker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot.albums import join_album
from bot.questionnaire import start_questionnaire
from shared import messages
from shared.audit import JobStatus, MediaKind, chat_reference, utc_now
from shared.config import get_settings
from shared.images import MAX_FILE_BYTES, MIN_SIDE
from shared.job_store import get_job_store
from shared.messages import MAX_FILE_MB
from shared.metrics import PHOTOS_RECEIVED, count_job
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.queue import ClassifyPhotoRequest, enqueue_classification
from shared.rate_limit import get_photo_rate_limit

log = logging.getLogger(__name__)
ACCEPTED_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/heic", "image/heif"}
)


@dataclass(frozen=True)
class IncomingImage:
    kind: MediaKind
    file_id: str
    file_unique_id: str
    file_size: int | None
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None


def incoming_image(message: Message) -> IncomingImage | None:
    """The image a message carries (a photo, or a file that may be one), or None."""
    if message.photo:
        largest = message.photo[-1]
        return IncomingImage(
            MediaKind.PHOTO, largest.file_id, largest.file_unique_id, largest.file_size, largest.width, largest.height
        )
    if message.document is not None:
        document = message.document
        return IncomingImage(
            MediaKind.DOCUMENT,
            document.file_id,
            document.file_unique_id,
            document.file_size,
            mime_type=document.mime_type,
        )
    return None


def chat_ref_of(chat_id: int) -> str:
    return chat_reference(chat_id, get_settings().chat_hash_key.get_secret_value())


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.photo:
        await take_image(message, context)


async def on_image_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.document is not None:
        await take_image(message, context)


async def take_image(message: Message, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or file from a patient who consented (also one held back until they did)."""
    image = incoming_image(message)
    if image is None:
        return
    limit = get_photo_rate_limit()
    if not await asyncio.to_thread(limit.allow, chat_ref_of(message.chat_id)):
        log.info("photo not analysed: the chat is over its limit of %d an hour", limit.per_hour)
        await message.reply_text(messages.too_many_photos(limit.per_hour), do_quote=True)
        PHOTOS_RECEIVED.labels(result="limited").inc()
        return
    if image.kind == MediaKind.DOCUMENT and image.mime_type not in ACCEPTED_IMAGE_TYPES:
        reason = f"document of type {image.mime_type or 'unknown'}"
        await reject(message, image, Refusal(RefusalCode.NOT_AN_IMAGE, reason))
        return
    await accept_image(message, image, context)


async def accept_image(message: Message, image: IncomingImage, context: ContextTypes.DEFAULT_TYPE) -> None:
    if image.file_size is not None and image.file_size > MAX_FILE_BYTES:
        await reject(message, image, Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_FILE_MB} MB"))
        return
    if image.width is not None and image.height is not None and min(image.width, image.height) < MIN_SIDE:
        reason = f"the image is only {image.width}x{image.height} pixels"
        await reject(message, image, Refusal(RefusalCode.TOO_SMALL, reason))
        return
    store = get_job_store()
    chat_ref = chat_ref_of(message.chat_id)
    album = join_album(message, context.bot_data)  # photos sent together: one reply (bot/albums.py)
    job = await asyncio.to_thread(
        store.record_received,
        chat_ref=chat_ref,
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
        album_id=None if album is None else album.album_id,
        album_position=None if album is None else message.message_id,
    )
    if album is None:
        status_message = await message.reply_text(messages.ANALYSING, do_quote=True)
    else:
        status_message = await album.status_message(message)
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
        PHOTOS_RECEIVED.labels(result="enqueue_failed").inc()
        count_job(JobStatus.FAILED.value, FailureCode.ENQUEUE_FAILED.value)
        return
    await asyncio.to_thread(store.mark_enqueued, job.id, queued_at=queued_at)
    PHOTOS_RECEIVED.labels(result="queued").inc()
    log.info("job %s: queued", job.id)
    if album is None:  # an album asks no questions: its results are photo-only
        await start_questionnaire(context, request, chat_ref)


async def reject(message: Message, image: IncomingImage, refusal: Refusal) -> None:
    store = get_job_store()
    job = await asyncio.to_thread(
        store.record_refused,
        chat_ref=chat_ref_of(message.chat_id),
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
        refusal=refusal,
    )
    sent = messages.sent_name(image.kind, image.mime_type)
    await message.reply_text(messages.rejection(refusal.code, MAX_FILE_MB, sent), do_quote=True)
    await asyncio.to_thread(store.mark_replied, job.id)
    PHOTOS_RECEIVED.labels(result="refused").inc()
    count_job(JobStatus.REJECTED.value, refusal.code.value)
    log.info("job %s: rejected (%s)", job.id, refusal.code)
