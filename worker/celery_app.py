"""The Celery application: Redis broker, at-least-once delivery, one queue per kind of work."""

from __future__ import annotations

from celery import Celery

from shared.config import get_settings
from shared.jobs import CLASSIFY_QUEUE, CLASSIFY_TASK, CLINICIANS_QUEUE, NOTIFY_CLINICIANS_TASK

settings = get_settings()

app = Celery("skinsense", broker=settings.redis_url, include=["worker.tasks"])
app.conf.update(
    # At-least-once: a task is acknowledged only after it ran, and goes back to the queue if the
    # process running it dies; idempotence through the job's state makes the second run harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=settings.task_time_limit_s,
    task_soft_time_limit=max(settings.task_time_limit_s - 15, 10),
    # Longer than any task with its retries' countdowns, so Redis does not redeliver a running task.
    broker_transport_options={"visibility_timeout": 3600},
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=CLASSIFY_QUEUE,
    task_routes={
        CLASSIFY_TASK: {"queue": CLASSIFY_QUEUE},
        NOTIFY_CLINICIANS_TASK: {"queue": CLINICIANS_QUEUE},
    },
    # Events for Flower.
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    # The bot enqueues while a patient waits: if Redis is down, fail within seconds and say so.
    task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
    broker_connection_timeout=3,
    enable_utc=True,
)
