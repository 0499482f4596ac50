"""The reconciler: no patient is left waiting. Queued by the beat every SKINSENSE_RECONCILE_INTERVAL_S
(``worker.tasks.reconcile_jobs``), it reads the job rows, the source of truth, and acts on what is overdue:

- a job whose next step is overdue (``due_at``: queued and not started, running past the task's hard limit in
  a worker that died, analysed but never finalized after the questionnaire's timeout, an answer not
  delivered) is queued again: ``classify`` (the worker goes on from the job's state) or ``finalize``; a job
  whose message still waits in the queue behind a backlog is late, not lost, and left alone (up to
  SKINSENSE_BACKLOG_DEADLINE_S longer: no worker may be taking the queue at all);
- after SKINSENSE_RECONCILE_MAX_TRIES such tries, the reconciler answers the patient itself
  (``ClassificationFlow.give_up``): an analysed job's result, else a kind apology (the job is failed as
  ``stalled`` unless it already has a refusal or failure to tell), retried while Telegram does not take it,
  less and less often (at most hourly); only a job a day old that still cannot be told anything has its
  delivery data erased and is left as it is (logged);
- a patient still waiting SKINSENSE_SLOW_NOTICE_AFTER_S after the photo for an analysis not done yet is told,
  once, that it takes longer than usual (the "Analysing..." message is edited).

Safe to run twice at once (two beats by mistake, or a run still going when the next starts): every action
follows a conditional UPDATE on the row (shared/job_store.py ``claim_overdue``, ``claim_slow_notice``) that
only one run can win. A run never raises for one job: each is logged and left for the next run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded

from shared.audit import JobStatus, utc_now
from shared.job_store import JobStore, OverdueJob
from worker.flow import ClassificationFlow

log = logging.getLogger(__name__)
APOLOGY_TRIES = 3  # after the last try: attempts at telling the patient, before the delivery data is erased
ABANDON_AFTER_S = 24 * 3600.0  # a job whose patient cannot be told anything is given up only once this old
MAX_BACKOFF_S = 3600.0  # between tries at telling the patient, once the regular ones are spent
RUN_BUDGET_S = 20.0  # a run stops taking overdue jobs after this (under the task's 30 s soft time limit)


@dataclass
class ReconcileCounts:
    requeued: int = 0
    gave_up: int = 0
    abandoned: int = 0
    told_slow: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Reconciler:
    jobs: JobStore
    flow: ClassificationFlow
    requeue_classification: Callable[[uuid.UUID], None]
    requeue_finalization: Callable[[uuid.UUID], None]
    max_tries: int
    slow_notice_after_s: float
    # When the oldest message waiting in the classify queue was published (None: none waits): a queued job
    # behind it is late, not lost (shared/job_store.py ``claim_overdue``).
    queue_front: Callable[[], datetime | None]
    budget_s: float = RUN_BUDGET_S
    abandon_after_s: float = ABANDON_AFTER_S

    def run(self) -> ReconcileCounts:
        counts = ReconcileCounts()
        try:
            front = self.queue_front()
        except Exception as error:  # the broker is away: plain deadlines (queuing again fails until it is back)
            log.warning("the classify queue could not be read (%s)", type(error).__name__)
            front = None
        # One job claimed at a time, within a budget under the task's time limit: a try is counted only for a job
        # acted on (claiming a batch up front charged every job of it a try when Telegram trouble made the first
        # ones slow and the run was cut short), and the jobs left over are the next run's.
        deadline = time.monotonic() + self.budget_s
        while time.monotonic() < deadline:
            claimed = self.jobs.claim_overdue(queue_front=front, limit=1)
            if not claimed:
                break
            job = claimed[0]
            try:
                self._recover(job, counts)
            except SoftTimeLimitExceeded:
                raise
            except Exception as error:  # left due: the next run tries again (and counts the try)
                counts.errors += 1
                log.warning("job %s: reconciling failed (%s)", job.id, type(error).__name__)
        for job_id in self.jobs.claim_slow_notice(waiting_longer_than_s=self.slow_notice_after_s):
            try:
                self.flow.tell_taking_longer(job_id)
                counts.told_slow += 1
            except Exception as error:  # claimed once: a notice that did not get through is not sent again
                counts.errors += 1
                log.warning("job %s: the taking-longer notice failed (%s)", job_id, type(error).__name__)
        return counts

    def _recover(self, job: OverdueJob, counts: ReconcileCounts) -> None:
        if job.tries <= self.max_tries:
            if job.status == JobStatus.DONE:
                self.requeue_finalization(job.id)
            else:
                self.requeue_classification(job.id)
            counts.requeued += 1
            log.warning(
                "job %s: overdue (%s); queued again, try %d of %d", job.id, job.status.value, job.tries, self.max_tries
            )
        elif job.tries <= self.max_tries + APOLOGY_TRIES or not self._old_enough_to_abandon(job.id):
            try:
                self.flow.give_up(job.id)
            except Exception:
                # Telegram or the database away for longer than the tries: tried again, less and less often,
                # until the job is ABANDON_AFTER_S old (a result is never erased for an outage of minutes).
                backoff_s = min(self.jobs.deadlines.queued_s * 2 ** (job.tries - self.max_tries), MAX_BACKOFF_S)
                self.jobs.postpone(job.id, retry_in_s=backoff_s)
                raise
            counts.gave_up += 1
        else:
            self.jobs.abandon(job.id)
            counts.abandoned += 1
            log.error("job %s: the patient could not be told anything for a day; delivery data erased", job.id)

    def _old_enough_to_abandon(self, job_id: uuid.UUID) -> bool:
        job = self.jobs.load(job_id)
        if job is None:
            return True
        return (utc_now() - job.received_at).total_seconds() >= self.abandon_after_s
