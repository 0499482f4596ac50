"""The workers' Celery app: the broker contract of shared/queue.py plus worker-side settings only."""

from __future__ import annotations

import faulthandler
import signal
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from celery.schedules import crontab
from celery.signals import setup_logging, worker_init

from shared.config import Settings, get_settings
from shared.logs import configure_logging
from shared.queue import (
    CLINICIAN_SWEEP_TASK,
    PURGE_TASK,
    RECONCILE_TASK,
    REMINDERS_TASK,
    WORKER_QUEUES,
    create_celery_app,
)
from worker.broker_restart import keep_worker_alive_on_broker_restart

P = ParamSpec("P")
R = TypeVar("R")

settings = get_settings()
# `kill -USR2` on a worker process (main or pool child: children inherit it) prints every thread's stack to its
# log: how a stuck worker is diagnosed (the chaos harness does it when a photo is left unanswered).
faulthandler.register(signal.SIGUSR2, all_threads=True)
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
        "send-due-reminders": {"task": REMINDERS_TASK, "schedule": settings.reminder_sweep_interval_s},
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


def worker_readiness(settings: Settings) -> Callable[[], list[str]]:
    """The worker's /health/ready check: a child has its model loaded, and the broker and the audit database
    answer. Everything it imports is imported here, in the main thread, before the pool forks: a child forked
    while the health thread imports a module (the database's dialect, on the first /health/ready) inherits that
    module's import lock, held for ever, and hangs in its set-up before its first task (no time limit applies)."""
    import encodings.idna  # noqa: F401  # a first connection to a host name imports these
    import stringprep  # noqa: F401

    from shared.config import parse_keys
    from shared.db import build_engine
    from shared.metrics import broker_reachable, database_reachable, model_loaded
    from shared.sealing import Sealer, delivery_key_problem

    build_engine(settings.database_url, pooled=False).dispose()  # loads the dialect and the driver; no connection
    model_loaded()
    broker_reachable("redis://127.0.0.1:1/0")  # imports redis' client and its error path; no server there
    sealer = Sealer(parse_keys(settings.delivery_key))

    def key_problem() -> str | None:
        """This worker's delivery key must open what the deployment sealed (or it answers no patient)."""
        engine = build_engine(settings.database_url, pooled=False)
        try:
            return delivery_key_problem(engine, sealer)
        finally:
            engine.dispose()

    def readiness() -> list[str]:
        problems = [] if model_loaded() else ["model: not loaded yet"]
        checks = (broker_reachable(settings.redis_url), database_reachable(settings.database_url), key_problem())
        return problems + [problem for problem in checks if problem]

    return readiness


def _serve_metrics_and_health(**_: Any) -> None:
    """In the worker's main process (before the pool forks): /metrics sums the children's values
    (PROMETHEUS_MULTIPROC_DIR, set by the worker command) and /health/ready (``worker_readiness``)."""
    if settings.worker_metrics_port == 0:
        return
    from shared.metrics import QueueDepthCollector, serve_metrics_and_health

    readiness = worker_readiness(settings)
    queue_depth = QueueDepthCollector(settings.redis_url, settings.redis_key_prefix, WORKER_QUEUES)
    list(queue_depth.collect())  # imported now too (see worker_readiness)
    serve_metrics_and_health(settings.metrics_address, settings.worker_metrics_port, readiness, queue_depth)


worker_init.connect(_serve_metrics_and_health, weak=False)
