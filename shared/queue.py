"""The broker contract between the bot and the workers: queue and task names, routes, serializer, publish
policy, the typed requests that travel on the broker (ids only, never image bytes) and one typed function
to enqueue each kind of work. The bot and the workers both build their Celery app here; the worker only
adds worker-side settings (worker/celery_app.py). Neither imports the other."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from pydantic import BaseModel, Field

from shared import clock
from shared.config import Settings, get_settings

CLASSIFY_QUEUE = "classify"
CLINICIANS_QUEUE = "clinicians"
WORKER_QUEUES: tuple[str, ...] = (CLASSIFY_QUEUE, CLINICIANS_QUEUE)

# Stable names: messages already queued in Redis (append-only file) carry them across deploys.
CLASSIFY_TASK = "worker.tasks.classify_photo"
NOTIFY_CLINICIANS_TASK = "worker.tasks.notify_clinicians"
FINALIZE_TASK = "worker.tasks.finalize_result"
PURGE_TASK = "worker.tasks.purge_expired_patient_data"  # daily, from the beat (worker/celery_app.py)
CLINICIAN_SWEEP_TASK = "worker.tasks.sweep_clinician_alerts"  # beat: unsent alerts, reminders, escalations
RECONCILE_TASK = "worker.tasks.reconcile_jobs"  # every few seconds, from the beat (worker/reconciler.py)
REMINDERS_TASK = "worker.tasks.send_due_reminders"  # beat: patients' reminders to photograph a spot again

TASK_ROUTES: dict[str, dict[str, str]] = {
    CLASSIFY_TASK: {"queue": CLASSIFY_QUEUE},
    NOTIFY_CLINICIANS_TASK: {"queue": CLINICIANS_QUEUE},
    FINALIZE_TASK: {"queue": CLASSIFY_QUEUE},  # the model combines the answers with the photo
    PURGE_TASK: {"queue": CLINICIANS_QUEUE},  # light work, off the patients' queue
    CLINICIAN_SWEEP_TASK: {"queue": CLINICIANS_QUEUE},
    RECONCILE_TASK: {"queue": CLINICIANS_QUEUE},  # likewise: it runs even while "classify" is backed up
    REMINDERS_TASK: {"queue": CLINICIANS_QUEUE},
}


# Every message carries when it was published, so the reconciler can tell a job waiting behind a backlog from a
# lost one (``oldest_waiting_published_at``). A retry is a new message and gets its own time.
PUBLISHED_AT_HEADER = "skinsense_published_at"


def _stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = clock.now().timestamp()  # compared with the jobs' deadlines


before_task_publish.connect(_stamp_publish_time, weak=False, dispatch_uid="skinsense-published-at")


class JobRequest(BaseModel):
    """Work on one job, named by its id only: what the worker needs to answer the patient (chat id, the
    "Analysing..." message, Telegram's file id) is read from the job row, where it is sealed (shared/job_store.py),
    so the broker's messages, its append-only file and Flower never hold a chat id or a file id.

    Messages queued before that (same task names) carried those fields; they are still accepted, read once so
    the worker can adopt them onto a row that lacks them (``legacy_delivery``), and never sent again."""

    job_id: uuid.UUID
    chat_id: int | None = Field(default=None, exclude=True, repr=False)
    status_message_id: int | None = Field(default=None, exclude=True, repr=False)
    file_id: str | None = Field(default=None, exclude=True, repr=False)

    def legacy_delivery(self) -> tuple[int, str, int | None] | None:
        """(chat id, file id, status message id) from a message in the old shape, else None."""
        if self.chat_id is None or self.file_id is None:
            return None
        return self.chat_id, self.file_id, self.status_message_id


class ClassifyPhotoRequest(JobRequest):
    """Analyse the job's photo and answer (a refusal at once; a result once the questionnaire closed)."""


class FinalizeResultRequest(JobRequest):
    """Combine the stored photo-only result with the patient's answers and reply (once). Queued by whichever
    side finishes second: the bot when the questionnaire closes after the analysis, or the worker (with a
    countdown: the questionnaire's timeout) when the analysis finishes first; and by the reconciler."""


class NotifyCliniciansRequest(BaseModel):
    """Send this job's clinician alert (its outbox row holds the rest, sealed: shared/clinic/store.py)."""

    job_id: uuid.UUID


def create_celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app speaking the contract: what both sides must agree on, and the producer's publish policy."""
    settings = settings or get_settings()
    app = Celery("skinsense", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=CLASSIFY_QUEUE,
        task_routes=TASK_ROUTES,
        # Longer than any task with its retries' countdowns, so Redis does not redeliver a running task.
        # global_keyprefix: every Redis key (queues, unacked, events) starts with the deployment's prefix.
        broker_transport_options={"visibility_timeout": 3600, "global_keyprefix": settings.redis_key_prefix},
        # The bot enqueues while a patient waits: if Redis is down, fail within seconds and say so.
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        broker_connection_timeout=3,
        task_send_sent_event=True,  # events for Flower
        enable_utc=True,
    )
    return app


def private_repr(job_id: uuid.UUID) -> dict[str, str]:
    """What Celery shows of a task's arguments (its events, hence Flower, and its logs): the job id only (the
    clinicians' request still carries a file id in its body until their alert reads it from an outbox row)."""
    return {"argsrepr": f"(job {job_id})", "kwargsrepr": "{}"}


@lru_cache
def producer_app() -> Celery:
    """The process's app for enqueueing, built on first use from the settings."""
    return create_celery_app()


def enqueue_classification(request: ClassifyPhotoRequest, app: Celery | None = None) -> None:
    """Queue a photo for classification (routed to the ``classify`` queue); raises if the broker is down."""
    (app or producer_app()).send_task(
        CLASSIFY_TASK, args=[request.model_dump(mode="json")], **private_repr(request.job_id)
    )


def enqueue_clinician_alert(request: NotifyCliniciansRequest, app: Celery | None = None) -> None:
    """Queue the forwarding of a high-risk result to the clinicians (routed to the ``clinicians`` queue)."""
    (app or producer_app()).send_task(
        NOTIFY_CLINICIANS_TASK, args=[request.model_dump(mode="json")], **private_repr(request.job_id)
    )


def enqueue_finalization(
    request: FinalizeResultRequest, app: Celery | None = None, *, countdown_s: float | None = None
) -> None:
    """Queue the final result (photo and answers); ``countdown_s``: not before that many seconds."""
    (app or producer_app()).send_task(
        FINALIZE_TASK, args=[request.model_dump(mode="json")], countdown=countdown_s, **private_repr(request.job_id)
    )


def oldest_waiting_published_at(redis_url: str, key_prefix: str, queue: str = CLASSIFY_QUEUE) -> datetime | None:
    """When the oldest message still waiting in ``queue`` was published; None when none waits (or it predates
    the header). kombu keeps a queue as a Redis list under the deployment's key prefix: it pushes on the left
    and workers take from the right, so the oldest is the last element."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        oldest = client.lindex(f"{key_prefix}{queue}", -1)
    finally:
        client.close()
    if oldest is None:
        return None
    published_at = json.loads(oldest).get("headers", {}).get(PUBLISHED_AT_HEADER)
    return datetime.fromtimestamp(float(published_at), UTC) if published_at is not None else None
