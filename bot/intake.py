"""Photo intake, once the patient has consented: the bot validates what it can without downloading, records
the job, answers "analysing...", enqueues the analysis and starts the questionnaire while the worker works.
It never runs the model and never sends image bytes to the broker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from kombu.exceptions import OperationalError as KombuOperationalError
from telegram import Message, Update

from bot.albums import join_album
from bot.context import BotContext
from bot.durable_updates import key_of
from bot.history import history_result_id, same_spot_number
from bot.questionnaire import start_questionnaire
from bot.state import Album
from shared.audit import Job, JobStatus, MediaKind, utc_now
from shared.images import MAX_FILE_BYTES, MIN_SIDE
from shared.job_store import Delivery
from shared.metrics import PHOTOS_RECEIVED, count_job
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.queue import ClassifyPhotoRequest, enqueue_classification
from shared.texts import patient as patient_texts
from shared.texts.patient import MAX_FILE_MB

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


async def on_photo(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is not None and message.photo:
        await take_image(message, context, update_key=key_of(update))


async def on_image_document(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is not None and message.document is not None:
        await take_image(message, context, update_key=key_of(update))


async def take_image(message: Message, context: BotContext, *, update_key: str | None = None) -> None:
    """A photo or file from a patient who consented (also one held back until they did).

    Idempotent by ``update_key`` (the Telegram update that brought it: bot/durable_updates.update_key): handling
    the same update again (a durable update queue replaying it after a crash) gives one job, one "Analysing..."
    message and one enqueue, going on from where the first handling stopped. Raises when the audit database
    cannot be written, so the update is handled again later rather than dropped. Photos held until consent come
    with the update that brought them (bot/held_photos.py)."""
    image = incoming_image(message)
    if image is None:
        return
    store = context.bot_data.services.jobs
    if update_key is not None:
        earlier = await asyncio.to_thread(store.by_update, update_key)
        if earlier is not None:
            log.info("job %s: update handled before; going on from where it stopped", earlier.id)
            await continue_job(message, context, earlier)
            return
    limit = context.bot_data.services.photo_limit
    if not await asyncio.to_thread(limit.allow, context.bot_data.services.chat_ref(message.chat_id)):
        log.info("photo not analysed: the chat is over its limit of %d an hour", limit.per_hour)
        if await asyncio.to_thread(
            limit.first_refusal, context.bot_data.services.chat_ref(message.chat_id)
        ):  # once, not per photo
            await message.reply_text(patient_texts.too_many_photos(limit.per_hour), do_quote=True)
        PHOTOS_RECEIVED.labels(result="limited").inc()
        return
    if image.kind == MediaKind.DOCUMENT and image.mime_type not in ACCEPTED_IMAGE_TYPES:
        reason = f"document of type {image.mime_type or 'unknown'}"
        await reject(message, image, Refusal(RefusalCode.NOT_AN_IMAGE, reason), context, update_key)
        return
    await accept_image(message, image, context, update_key)


async def accept_image(
    message: Message, image: IncomingImage, context: BotContext, update_key: str | None = None
) -> None:
    if image.file_size is not None and image.file_size > MAX_FILE_BYTES:
        refusal = Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_FILE_MB} MB")
        await reject(message, image, refusal, context, update_key)
        return
    if image.width is not None and image.height is not None and min(image.width, image.height) < MIN_SIDE:
        reason = f"the image is only {image.width}x{image.height} pixels"
        await reject(message, image, Refusal(RefusalCode.TOO_SMALL, reason), context, update_key)
        return
    # Photos sent together: one reply (bot/albums.py).
    album = join_album(message, context.bot_data.services.chat_ref(message.chat_id), context.bot_data.albums)
    store, chat_ref = context.bot_data.services.jobs, context.bot_data.services.chat_ref(message.chat_id)
    # A new photo of a spot, sent in reply to its reminder: compared with the earlier one (bot/spots.py).
    followup, same_spot_as = None, None
    if album is None and message.reply_to_message is not None:
        followups = context.bot_data.services.followups
        followup = await asyncio.to_thread(followups.for_reply, chat_ref, message.reply_to_message.message_id)
    if followup is not None:
        same_spot_as = followup.followup.job_id
    elif album is None and (number := same_spot_number(message.caption)) is not None:
        # "same as 3": result 3 as /history numbers them; only the analyses can be compared (the earlier photo
        # itself is not kept).
        patients = context.bot_data.services.patients
        same_spot_as = await asyncio.to_thread(history_result_id, patients, chat_ref, number)
    # The row first, with what the workers need to answer (sealed): from here on the job cannot be lost.
    job = await asyncio.to_thread(
        store.record_received,
        chat_ref=chat_ref,
        album_id=None if album is None else album.album_id,
        album_position=None if album is None else message.message_id,
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
        delivery=Delivery(
            chat_id=message.chat_id,
            file_id=image.file_id,
            photo_message_id=message.message_id,
            earlier_file_id=None if followup is None else followup.contact.file_id,
        ),
        update_key=update_key,
        same_spot_as=same_spot_as,
    )
    if followup is not None:
        await asyncio.to_thread(context.bot_data.services.followups.answered, followup.followup.id)
    if (
        await asyncio.to_thread(context.bot_data.services.patients.consent, chat_ref, patient_texts.PRIVACY_VERSION)
        is None
    ):
        # "No thanks" was handled while this photo came in (updates are handled concurrently). Checked once the
        # row exists, so that this check or the tap's close (bot/consent.py) finds the photo: never analysed.
        await asyncio.to_thread(store.close_unanalysed, chat_ref, FailureCode.CONSENT_WITHDRAWN, "consent withdrawn")
        closed = await asyncio.to_thread(store.load, job.id)
        job = closed or job
    await continue_job(message, context, job, album)


async def continue_job(message: Message, context: BotContext, job: Job, album: Album | None = None) -> None:
    """The steps after the row, each skipped when an earlier handling of the update did it: the questionnaire
    (none for an album: its questions are closed when recorded), the "Analysing..." message (an album's photos
    share one), the enqueue. The questions come first, so that "Analysing...", which becomes the result, is the
    newest message: the result arrives where the patient reads next, under the questions they answered."""
    store = context.bot_data.services.jobs
    if job.replied_at is not None:
        return
    if job.status == JobStatus.REJECTED and job.delivery is None:  # refused here; the reply was not recorded
        assert isinstance(job.error_code, RefusalCode)
        image = incoming_image(message)
        sent = patient_texts.sent_name(job.media_kind, None if image is None else image.mime_type)
        await message.reply_text(patient_texts.rejection(job.error_code, MAX_FILE_MB, sent), do_quote=True)
        await asyncio.to_thread(store.mark_replied, job.id)
        return
    delivery = store.delivery_of(job)
    if delivery is None:
        log.error("job %s: no delivery data on the row; left to the reconciler", job.id)
        return
    if (
        job.answers_closed_at is None
        and job.status not in (JobStatus.REJECTED, JobStatus.FAILED)
        and job.id not in context.bot_data.questionnaires
        and delivery.questionnaire_message_id is None  # asked by an earlier handling (lost with a restart)
    ):
        await start_questionnaire(context, job.id, message.chat_id, job.chat_ref, message.message_id)
    if delivery.status_message_id is None:
        if job.album_id is not None and album is None:  # a replay: the album's message, if it is still known
            album = join_album(message, context.bot_data.services.chat_ref(message.chat_id), context.bot_data.albums)
        if album is None:
            # Never a status message after the answer: under load the reconciler may have had the photo answered
            # (threaded to it) while this handling waited for the chat's allowance.
            current = await asyncio.to_thread(store.load, job.id)
            if current is None or current.replied_at is not None:
                return
            status_message = await message.reply_text(patient_texts.ANALYSING, do_quote=True)
        else:
            status_message = await album.status_message(message)
        job = await asyncio.to_thread(store.set_status_message, job.id, status_message.message_id)
        if job.replied_at is not None and album is None:  # answered while "Analysing..." waited to go out
            await status_message.edit_text(patient_texts.ANSWERED_ABOVE)
            return
        delivery = delivery.model_copy(update={"status_message_id": status_message.message_id})
    # A photo closed as it came in ("No thanks" meanwhile) is queued all the same: the worker that takes it tells
    # the patient it is not analysed, as for the photos the tap closed.
    if job.queued_at is None and (job.status == JobStatus.QUEUED or job.error_code == FailureCode.CONSENT_WITHDRAWN):
        queued_at = utc_now()  # taken before sending: the task may start before send_task returns
        try:
            await asyncio.to_thread(enqueue_classification, ClassifyPhotoRequest(job_id=job.id))
        except KombuOperationalError:
            # Broker down: the job stays queued and nothing is lost. This update is handled again with backoff
            # (bot/durable_updates.py: may_pass) and the reconciler queues the job once the broker is back.
            await tell_enqueue_delayed(job, delivery, context)
            raise
        job = await asyncio.to_thread(store.mark_enqueued, job.id, queued_at=queued_at)
        PHOTOS_RECEIVED.labels(result="queued").inc()
        log.info("job %s: queued", job.id)


async def tell_enqueue_delayed(job: Job, delivery: Delivery, context: BotContext) -> None:
    """Once per job: the "Analysing..." message says it is taking longer (the reconciler, which would say it,
    runs through the broker that is down)."""
    log.warning("job %s: broker unavailable; the job stays queued and is retried", job.id)
    PHOTOS_RECEIVED.labels(result="enqueue_delayed").inc()
    if delivery.status_message_id is None or not await asyncio.to_thread(
        context.bot_data.services.jobs.mark_slow_notice, job.id
    ):
        return
    await context.bot.edit_message_text(
        patient_texts.TAKING_LONGER, chat_id=delivery.chat_id, message_id=delivery.status_message_id
    )


async def reject(
    message: Message, image: IncomingImage, refusal: Refusal, context: BotContext, update_key: str | None = None
) -> None:
    store = context.bot_data.services.jobs
    job = await asyncio.to_thread(
        store.record_refused,
        chat_ref=context.bot_data.services.chat_ref(message.chat_id),
        media_kind=image.kind,
        file_unique_id=image.file_unique_id,
        refusal=refusal,
        update_key=update_key,
    )
    if job.replied_at is not None:
        return  # an earlier handling of this update answered it
    sent = patient_texts.sent_name(image.kind, image.mime_type)
    await message.reply_text(patient_texts.rejection(refusal.code, MAX_FILE_MB, sent), do_quote=True)
    await asyncio.to_thread(store.mark_replied, job.id)
    PHOTOS_RECEIVED.labels(result="refused").inc()
    count_job(JobStatus.REJECTED.value, refusal.code.value)
    log.info("job %s: rejected (%s)", job.id, refusal.code)
