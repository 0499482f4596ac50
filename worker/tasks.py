"""Worker tasks: classify a patient's photo and reply; forward high-risk results to clinicians.

The model is loaded once per worker process (``worker_process_init``, or lazily on the first task
under a pool without child processes), never in the prefork parent and never per task.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.signals import worker_process_init

from models.inference import Classifier
from models.screening import screen_photo
from shared import messages
from shared.audit import Job, JobStatus, MediaKind
from shared.config import get_settings
from shared.images import MAX_FILE_BYTES, UnreadableImage
from shared.job_store import get_job_store
from shared.labels import RiskLevel
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.queue import (
    CLASSIFY_TASK,
    NOTIFY_CLINICIANS_TASK,
    ClassifyPhotoRequest,
    NotifyCliniciansRequest,
    enqueue_clinician_alert,
)
from worker.celery_app import app, task
from worker.telegram import BotApi, FileTooLarge, RetryAfter, TelegramRequestError, TelegramUnavailable

log = logging.getLogger(__name__)
MAX_MB = MAX_FILE_BYTES // (1024 * 1024)
MAX_DELIVERY_ATTEMPTS = 3

_classifier: Classifier | None = None
_bot_api: BotApi | None = None


def get_classifier() -> Classifier:
    global _classifier
    if _classifier is None:
        settings = get_settings()
        _classifier = Classifier(runtime=settings.model_runtime, threads=settings.model_threads)
        log.info("model %s loaded (%s runtime)", _classifier.version, _classifier.runtime_name)
    return _classifier


def get_bot_api() -> BotApi:
    global _bot_api
    if _bot_api is None:
        settings = get_settings()
        if settings.telegram_token is None:
            raise RuntimeError("SKINSENSE_TELEGRAM_TOKEN is not set")
        _bot_api = BotApi(settings.bot_api_base, settings.bot_file_base, settings.telegram_token.get_secret_value())
    return _bot_api


def _load_model_in_child(**_: Any) -> None:
    get_classifier()


worker_process_init.connect(_load_model_in_child)


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter: about 2, 4, 8, ... seconds, at most 60."""
    return float(min(2 ** (retries + 1), 60)) * random.uniform(0.8, 1.2)


class TelegramTask(Task):  # type: ignore[misc]
    """Retries on Telegram flood control (waiting what it says) and on network errors (backoff)."""

    max_retries = 6

    def run_with_retries(self, work: Any, *args: Any) -> Any:
        try:
            return work(*args)
        except RetryAfter as error:
            raise self.retry(exc=error, countdown=error.seconds + random.uniform(0, 1)) from None
        except TelegramUnavailable as error:
            raise self.retry(exc=error, countdown=retry_delay(self.request.retries)) from None


@task(name=CLASSIFY_TASK, bind=True, base=TelegramTask, pydantic=True)
def classify_photo(self: TelegramTask, job_request: ClassifyPhotoRequest) -> str:
    try:
        return str(self.run_with_retries(_classify_and_reply, job_request))
    except SoftTimeLimitExceeded:
        _fail(job_request, FailureCode.TIME_LIMIT, "the analysis took too long")
        return JobStatus.FAILED.value
    except (RetryAfter, TelegramUnavailable) as error:  # retries exhausted
        get_job_store().mark_failed(job_request.job_id, FailureCode.TELEGRAM_UNAVAILABLE, str(error))
        raise
    except Retry:
        raise
    except Exception as error:  # a bug or an outage: record it, tell the patient if we can, fail the task
        log.error("job %s: failed with %s", job_request.job_id, type(error).__name__)
        with contextlib.suppress(Exception):  # the database itself may be what failed
            _fail(job_request, FailureCode.INTERNAL_ERROR, type(error).__name__)
        raise


def _classify_and_reply(request: ClassifyPhotoRequest) -> str:
    store = get_job_store()
    job = store.load(request.job_id)
    if job is None:
        log.warning("job %s: not in the audit database; dropped", request.job_id)
        return "missing"
    if job.replied_at is not None:
        log.info("job %s: already answered; redelivery ignored", job.id)
        return "duplicate"
    if job.status == JobStatus.RUNNING and job.delivery_attempts >= MAX_DELIVERY_ATTEMPTS:
        # Each earlier attempt died with its worker process: this photo must not take down more.
        log.error("job %s: worker lost %d times; giving up", job.id, job.delivery_attempts)
        _fail(request, FailureCode.WORKER_LOST, f"the worker process died {job.delivery_attempts} times on this photo")
        return JobStatus.FAILED.value
    if job.status not in (JobStatus.DONE, JobStatus.REJECTED):
        job = _analyse(request, job)
    if job.status == JobStatus.DONE and job.risk == RiskLevel.HIGH and get_settings().clinician_chat_ids:
        # Before the patient's reply: if we die in between, the redelivered task enqueues it again and
        # the notify task skips clinicians already told.
        enqueue_clinician_alert(
            NotifyCliniciansRequest(job_id=job.id, file_id=request.file_id, media_kind=request.media_kind), app
        )
    _reply(request, _patient_text(job))
    store.mark_replied(job.id)
    return job.status.value


def _analyse(request: ClassifyPhotoRequest, job: Job) -> Job:
    store = get_job_store()
    job = store.mark_running(job.id)
    api = get_bot_api()
    try:
        data = api.download_file(request.file_id, MAX_FILE_BYTES)
    except (RetryAfter, TelegramUnavailable):
        # Back to the queue, alive: only a job left RUNNING counts as a worker lost on it.
        store.mark_requeued(job.id)
        raise
    except FileTooLarge:
        return _reject(job.id, Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_MB} MB"), None)
    except TelegramRequestError as error:
        reason = f"Telegram refused the download: {error.description}"[:500]
        return _reject(job.id, Refusal(RefusalCode.DOWNLOAD_FAILED, reason), None)
    image_sha256 = hashlib.sha256(data).hexdigest()
    try:
        prediction = screen_photo(data, get_classifier())
    except UnreadableImage as error:
        # An unknown code is a bug (a gate without its patient text): ValueError, recorded as internal_error.
        return _reject(job.id, Refusal(RefusalCode(error.code), error.reason), image_sha256)
    return store.mark_done(job.id, prediction, image_sha256=image_sha256)


def _reject(job_id: uuid.UUID, refusal: Refusal, image_sha256: str | None) -> Job:
    log.info("job %s: rejected (%s)", job_id, refusal.code)
    return get_job_store().mark_rejected(job_id, refusal, image_sha256=image_sha256)


def _patient_text(job: Job) -> str:
    if job.status == JobStatus.REJECTED:
        assert isinstance(job.error_code, RefusalCode)
        return messages.rejection(job.error_code, MAX_MB)
    assert job.ranking is not None and job.risk is not None
    return messages.result(job.ranking, job.risk, bool(job.melanoma_alert))


def _reply(request: ClassifyPhotoRequest, text: str) -> None:
    """Edit the "analysing..." message into the result; if it is gone, send a new message."""
    api = get_bot_api()
    try:
        api.call(
            "editMessageText",
            chat_id=request.chat_id,
            message_id=request.status_message_id,
            text=text,
            parse_mode="HTML",
        )
    except TelegramRequestError as error:
        if "not modified" in error.description:
            return  # the text is already there: an earlier attempt succeeded
        log.info("job %s: edit failed (%s); sending a new message", request.job_id, error.status)
        api.call("sendMessage", chat_id=request.chat_id, text=text, parse_mode="HTML")


def _fail(request: ClassifyPhotoRequest, code: FailureCode, reason: str) -> None:
    """Record the failure and, best effort, turn the patient's "analysing..." message into an apology."""
    store = get_job_store()
    store.mark_failed(request.job_id, code, reason)
    try:
        _reply(request, messages.failure(code))
        store.mark_replied(request.job_id)
    except Exception:  # the failure is recorded; telling the patient is best effort
        log.warning("job %s: could not tell the patient about the failure", request.job_id)


@task(name=NOTIFY_CLINICIANS_TASK, bind=True, base=TelegramTask, pydantic=True)
def notify_clinicians(self: TelegramTask, request: NotifyCliniciansRequest) -> int:
    return int(self.run_with_retries(_notify, request))


def _notify(request: NotifyCliniciansRequest) -> int:
    """Send the photo, ranking and job id to each clinician chat not yet told; returns how many were told now."""
    store = get_job_store()
    job = store.load(request.job_id)
    if job is None or job.status != JobStatus.DONE or job.risk != RiskLevel.HIGH or job.ranking is None:
        return 0
    caption = messages.clinician_alert(
        str(job.id), job.ranking, job.risk, bool(job.melanoma_alert), job.model_version or "unknown"
    )
    notified = job.clinicians_notified or {}
    api = get_bot_api()
    sent = 0
    for chat_id in get_settings().clinician_chat_ids:
        if str(chat_id) in notified:
            continue
        if request.media_kind == MediaKind.PHOTO:
            api.call("sendPhoto", chat_id=chat_id, photo=request.file_id, caption=caption, parse_mode="HTML")
        else:
            api.call("sendDocument", chat_id=chat_id, document=request.file_id, caption=caption, parse_mode="HTML")
        store.mark_clinician_notified(job.id, chat_id)  # saved per chat, so a retry skips it
        sent += 1
    return sent
