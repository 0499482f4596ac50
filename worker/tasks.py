"""Worker tasks, kept thin: Celery's decorators, the per-process resources and the retry mapping. The work
itself is worker/flow.py.

Each worker process loads the model and opens its Telegram client (its own event loop) once, in
``worker_process_init`` (or lazily on the first task under a pool without child processes), never in the
prefork parent and never per task.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from telegram.error import RetryAfter, TelegramError

from models.serving.inference import Classifier
from models.serving.validation_figures import validation_shares
from shared.audit import JobStatus
from shared.clinic.calendar import WorkingCalendar
from shared.clinic.store import ThreadPolicy, get_alert_store
from shared.config import get_settings
from shared.db import get_engine
from shared.job_store import get_job_store
from shared.metrics import MODEL_INFO, RETRIES, VALIDATION_SHARE
from shared.outcomes import FailureCode
from shared.queue import (
    CLASSIFY_TASK,
    CLINICIAN_SWEEP_TASK,
    FINALIZE_TASK,
    NOTIFY_CLINICIANS_TASK,
    PURGE_TASK,
    RECONCILE_TASK,
    REMINDERS_TASK,
    ClassifyPhotoRequest,
    FinalizeResultRequest,
    NotifyCliniciansRequest,
    enqueue_classification,
    enqueue_clinician_alert,
    enqueue_finalization,
    oldest_waiting_published_at,
    private_repr,
)
from shared.spot_followups import SpotFollowupStore
from shared.telegram_calls import WaitTooLong
from worker.celery_app import app, task
from worker.clinician_alerts import ClinicianAlertSender, ClinicianAlertSweep, explanation_for_clinicians
from worker.flow import ClassificationFlow, OtherModelVersion
from worker.reconciler import Reconciler
from worker.reminders import ReminderSender
from worker.telegram import TelegramClient, is_transient, retry_after_seconds

log = logging.getLogger(__name__)
R = TypeVar("R")
RequestT = TypeVar("RequestT", ClassifyPhotoRequest, FinalizeResultRequest, NotifyCliniciansRequest)

_flow: ClassificationFlow | None = None


def get_flow() -> ClassificationFlow:
    """This process's flow, with its model and Telegram client; built once."""
    global _flow
    if _flow is None:
        settings = get_settings()
        classifier = Classifier(runtime=settings.model_runtime, threads=settings.model_threads)
        log.info("model %s loaded (%s runtime)", classifier.version, classifier.runtime_name)
        MODEL_INFO.labels(version=classifier.version, runtime=classifier.runtime_name).set(1)
        for (kind, measure), share in validation_shares(classifier.version).items():  # drift's baseline
            VALIDATION_SHARE.labels(photo_kind=kind, measure=measure).set(share)
        _flow = ClassificationFlow(
            telegram=TelegramClient.open(settings),
            classifier=classifier,
            jobs=get_job_store(),
            clinician_chat_ids=settings.clinician_chat_ids,
            alert_clinicians=lambda request: enqueue_clinician_alert(request, app),
            await_answers=lambda request: enqueue_finalization(
                request, app, countdown_s=settings.questionnaire_timeout_s
            ),
            clinician_threads=ThreadPolicy.from_settings(settings),
        )
    return _flow


_clinician_alerts: ClinicianAlertSender | None = None


def get_clinician_alerts() -> ClinicianAlertSender:
    """This process's alert sender, sharing the flow's Telegram client."""
    global _clinician_alerts
    if _clinician_alerts is None:
        settings = get_settings()
        flow = get_flow()
        _clinician_alerts = ClinicianAlertSender(
            telegram=flow.telegram,
            alerts=get_alert_store(),
            clinician_chat_ids=settings.clinician_chat_ids,
            lead_chat_id=settings.clinician_lead_chat_id,
            explain=lambda view, photo: explanation_for_clinicians(flow.classifier, view, photo),
        )
    return _clinician_alerts


def _set_up_worker_process(**_: Any) -> None:
    get_flow()


def _close_worker_process(**_: Any) -> None:
    if _flow is not None:
        with contextlib.suppress(Exception):  # the process is going away either way
            _flow.telegram.close()


worker_process_init.connect(_set_up_worker_process, weak=False)
worker_process_shutdown.connect(_close_worker_process, weak=False)


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter: about 2, 4, 8, ... seconds, at most 60."""
    return float(min(2 ** (retries + 1), 60)) * random.uniform(0.8, 1.2)


# A database outage is waited out longer than Telegram trouble: about 2+4+8+16+32+60*4 s, over 5 minutes.
DATABASE_MAX_RETRIES = 9
# Handed back this often for a worker of the job's model version; then the reconciler's tries, then its last
# resort (the analysing model's photo-only result, worker/flow.py).
MODEL_VERSION_MAX_RETRIES = 20


def is_database_outage(error: BaseException) -> bool:
    """The audit database did not answer (server down or restarting, connection lost, SQLite locked): worth
    retrying the same work later. Errors in what we asked (constraints, bad SQL) are not."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class TelegramTask(Task):  # type: ignore[misc]  # Celery's Task has no type hints
    """Retries on Telegram flood control (waiting what it says), on network errors and on database outages
    (backoff); the job is not overdue for the reconciler before its retry had its chance."""

    max_retries = 6

    def run_with_retries(self, work: Callable[[RequestT], R], request: RequestT) -> R:
        # A retry is a new message: it shows the job id only, like the first (shared.queue.private_repr).
        shown = private_repr(request.job_id)
        try:
            return work(request)
        except RetryAfter as error:  # each 429 is already counted by shared/telegram_calls.py
            RETRIES.labels(cause="flood_control").inc()
            # Our own budget said wait (WaitTooLong: nothing was sent): never a failure, however often; many
            # tasks waiting for one chat's slot are spread out instead of all asking again at once.
            ours = isinstance(error, WaitTooLong)
            spread = min(2.0**self.request.retries, 30.0) if ours else 1.0
            countdown = retry_after_seconds(error) + random.uniform(0, spread)
            _postpone(request.job_id, countdown)
            allowed = self.request.retries + 1 if ours else self.max_retries
            raise self.retry(exc=error, countdown=countdown, max_retries=allowed, **shown) from None
        except TelegramError as error:
            if not is_transient(error):
                raise
            RETRIES.labels(cause="network").inc()
            countdown = retry_delay(self.request.retries)
            _postpone(request.job_id, countdown)
            raise self.retry(exc=error, countdown=countdown, **shown) from None
        except OtherModelVersion as error:  # a worker of the job's model version takes it (hosts mid-upgrade)
            RETRIES.labels(cause="model_version").inc()
            log.warning("%s; handed back for a worker of that version", error)
            countdown = random.uniform(1.0, 5.0)
            _postpone(request.job_id, countdown)
            raise self.retry(exc=error, countdown=countdown, max_retries=MODEL_VERSION_MAX_RETRIES, **shown) from None
        except DBAPIError as error:
            if not is_database_outage(error):
                raise
            RETRIES.labels(cause="database").inc()
            log.warning(
                "job %s: the audit database did not answer (%s); retrying", request.job_id, type(error).__name__
            )
            countdown = retry_delay(self.request.retries)
            raise self.retry(exc=error, countdown=countdown, max_retries=DATABASE_MAX_RETRIES, **shown) from None


def _postpone(job_id: uuid.UUID, retry_in_s: float) -> None:
    with contextlib.suppress(Exception):  # best effort: at worst the reconciler queues a harmless duplicate
        get_job_store().postpone(job_id, retry_in_s=retry_in_s)


@task(name=CLASSIFY_TASK, bind=True, base=TelegramTask, pydantic=True)
def classify_photo(self: TelegramTask, request: ClassifyPhotoRequest) -> str:
    flow = get_flow()
    try:
        return self.run_with_retries(flow.classify_and_reply, request)
    except SoftTimeLimitExceeded:
        flow.fail(request.job_id, FailureCode.TIME_LIMIT, "the analysis took too long")
        return JobStatus.FAILED.value
    except Retry:
        raise
    except TelegramError as error:
        if is_transient(error):  # retries exhausted; a finished result is kept (and stays due)
            with contextlib.suppress(Exception):
                flow.fail(request.job_id, FailureCode.TELEGRAM_UNAVAILABLE, type(error).__name__)
        else:
            _fail_unexpectedly(flow, request, error)
        raise
    except Exception as error:  # a bug or an outage: record it, tell the patient if we can, fail the task
        _fail_unexpectedly(flow, request, error)
        raise


@task(name=FINALIZE_TASK, bind=True, base=TelegramTask, pydantic=True)
def finalize_result(self: TelegramTask, request: FinalizeResultRequest) -> str:
    flow = get_flow()
    try:
        return self.run_with_retries(flow.finalize, request)
    except Retry:
        raise
    except TelegramError as error:
        if not is_transient(error):
            _fail_unexpectedly(flow, request, error)
        raise
    except Exception as error:
        _fail_unexpectedly(flow, request, error)
        raise


def _fail_unexpectedly(
    flow: ClassificationFlow, request: ClassifyPhotoRequest | FinalizeResultRequest, error: Exception
) -> None:
    """A bug, or an outage outlasting the retries: a job not analysed yet is failed with an apology; a finished
    one keeps its outcome and stays due (the reconciler delivers it)."""
    log.error("job %s: failed with %s", request.job_id, type(error).__name__)
    with contextlib.suppress(Exception):  # the database itself may be what failed
        flow.fail(request.job_id, FailureCode.INTERNAL_ERROR, type(error).__name__)


@task(name=NOTIFY_CLINICIANS_TASK, bind=True, base=TelegramTask, pydantic=True)
def notify_clinicians(self: TelegramTask, request: NotifyCliniciansRequest) -> int:
    """One job's clinician alert (worker/clinician_alerts.py); exactly once per clinician chat where Telegram
    allows it. Retries exhausted are harmless: beat's sweep queues the alert again."""
    alerts = get_clinician_alerts()
    return self.run_with_retries(lambda r: alerts.notify_clinicians(r.job_id), request)


@task(name=CLINICIAN_SWEEP_TASK)
def sweep_clinician_alerts() -> dict[str, int]:
    """Beat, every SKINSENSE_CLINICIAN_SWEEP_INTERVAL_S: reminders and escalations due, and every alert with
    deliveries still to make queued again (a broker hiccup never loses one). Safe if it runs twice."""
    from dataclasses import asdict

    settings = get_settings()
    sweep = ClinicianAlertSweep(
        alerts=get_alert_store(),
        calendar=WorkingCalendar.from_settings(settings),
        claim_within_hours=settings.clinician_claim_within_hours,
        resolve_within_days=settings.clinician_resolve_within_days,
        lead_chat_id=settings.clinician_lead_chat_id,
        queue_alert=lambda job_id: enqueue_clinician_alert(NotifyCliniciansRequest(job_id=job_id), app),
    )
    return asdict(sweep.run())


@task(name=REMINDERS_TASK)
def send_due_reminders() -> int:
    """Beat, every SKINSENSE_REMINDER_SWEEP_INTERVAL_S: patients' reminders to photograph a spot again that are due
    (worker/reminders.py); safe if it runs twice (each reminder is claimed once)."""
    flow = get_flow()
    followups = SpotFollowupStore(get_engine())
    return ReminderSender(telegram=flow.telegram, followups=followups, jobs=flow.jobs).send_due()


_reconciler: Reconciler | None = None


def get_reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        settings = get_settings()
        _reconciler = Reconciler(
            jobs=get_job_store(),
            flow=get_flow(),
            requeue_classification=lambda job_id: enqueue_classification(ClassifyPhotoRequest(job_id=job_id), app),
            requeue_finalization=lambda job_id: enqueue_finalization(FinalizeResultRequest(job_id=job_id), app),
            max_tries=settings.reconcile_max_tries,
            slow_notice_after_s=settings.slow_notice_after_s,
            queue_front=lambda: oldest_waiting_published_at(settings.redis_url, settings.redis_key_prefix),
        )
    return _reconciler


@task(name=RECONCILE_TASK)
def reconcile_jobs() -> dict[str, int]:
    """Overdue jobs queued again, apologies after the last try, the taking-longer notice (worker/reconciler.py)."""
    counts = get_reconciler().run()
    if any(asdict(counts).values()):
        log.info("reconciler: %s", counts)
    return asdict(counts)


@task(name=PURGE_TASK)
def purge_expired_patient_data() -> dict[str, int]:
    """Retention (shared/retention.py): erase patient data older than SKINSENSE_RETENTION_DAYS, keep tombstones."""
    from dataclasses import asdict

    from shared.db import get_engine
    from shared.retention import purge_patient_data

    counts = purge_patient_data(get_engine(), older_than_days=get_settings().retention_days)
    log.info("retention purge: %s", counts)
    return asdict(counts)
