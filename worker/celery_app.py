"""The workers' Celery app: the broker contract of shared/queue.py plus worker-side settings only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from celery.schedules import crontab
from celery.signals import setup_logging, worker_init

from shared.config import get_settings
from shared.logs import configure_logging
from shared.queue import CLINICIAN_SWEEP_TASK, PURGE_TASK, RECONCILE_TASK, WORKER_QUEUES, create_celery_app
from worker.broker_restart import keep_worker_alive_on_broker_restart

P = ParamSpec("P")
R = TypeVar("R")

settings = get_settings()
keep_worker_alive_on_broker_restart()  # kombu would stop the worker on a Redis restart

app = create_celery_app(settings)
app.conf.update(
    include=["worker.tasks"],
    # At-least-once: a task is acknowledged only after it ran, and goes back to the queue if the
    # process running it dies; idempotence through the job's state makes the second run harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=settings.task_time_limit_s,
    task_soft_time_limit=max(settings.task_time_limit_s - 15, 10),
    worker_send_task_events=True,  # events for Flower
    broker_connection_retry_on_startup=True,
    # `skinsense beat` (one per deployment) queues the retention purge once a day, the clinician sweep and the
    # reconciler every few seconds (a run not started before the next is queued expires); all are idempotent.
    beat_schedule={
        "purge-expired-patient-data": {"task": PURGE_TASK, "schedule": crontab(hour=3, minute=17)},
        # Clinician alerts: unsent outbox rows queued again, reminders and escalations (safe if run twice).
        "sweep-clinician-alerts": {"task": CLINICIAN_SWEEP_TASK, "schedule": settings.clinician_sweep_interval_s},
        "reconcile-jobs": {
            "task": RECONCILE_TASK,
            "schedule": settings.reconcile_interval_s,
            "options": {"expires": settings.reconcile_interval_s},
        },
    },
)
app.set_current()
# The workers log in the one format of shared/logs.py, with its token filter, instead of Celery's own set-up.
setup_logging.connect(configure_logging, weak=False)


def task(**options: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``app.task`` with a type (Celery has none): the decorated function keeps its signature for mypy."""
    return cast(Callable[[Callable[P, R]], Callable[P, R]], app.task(**options))


def _serve_metrics_and_health(**_: Any) -> None:
    """In the worker's main process (before the pool forks): /metrics sums the children's values
    (PROMETHEUS_MULTIPROC_DIR, set by the worker command); /health/ready: a child has its model loaded, and
    the broker and the audit database answer."""
    if settings.worker_metrics_port == 0:
        return
    from shared.metrics import (
        QueueDepthCollector,
        broker_reachable,
        database_reachable,
        model_loaded,
        serve_metrics_and_health,
    )

    def readiness() -> list[str]:
        problems = [] if model_loaded() else ["model: not loaded yet"]
        checks = (broker_reachable(settings.redis_url), database_reachable(settings.database_url))
        return problems + [problem for problem in checks if problem]

    queue_depth = QueueDepthCollector(settings.redis_url, settings.redis_key_prefix, WORKER_QUEUES)
    serve_metrics_and_health(settings.metrics_address, settings.worker_metrics_port, readiness, queue_depth)


worker_init.connect(_serve_metrics_and_health, weak=False)
