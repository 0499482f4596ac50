"""Delivery on the real stack (sandbox, redis-server, Celery workers and beat, the bot; SQLite, and PostgreSQL for
the outage): the job row is the source of truth. A photo whose broker message was lost with its worker is queued
again by the reconciler and answered once (the patient told meanwhile that it takes longer); a photo no worker
analyses gets the apology after the last try and nothing after; the database away for a few seconds loses no
result. Each test checks what the broker and the database hold: job ids, and chat and file ids sealed only."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.audit import InboundUpdate, Job, JobStatus
from shared.config import Settings
from shared.outcomes import FailureCode
from shared.queue import CLASSIFY_QUEUE, CLINICIANS_QUEUE
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts
from skinsense.sandbox import plain_text
from skinsense.stack import worker_command
from tests.auxil.patient import consent, send_photo_skipping_questions
from tests.auxil.services import ChildProcess, postgres_cluster, wait_until
from tests.auxil.stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

# Short deadlines, so that a test sees the reconciler act within seconds.
RECONCILER = {
    "reconcile_interval_s": 1,
    "queued_deadline_s": 4,
    "backlog_deadline_s": 3,  # a photo no worker takes is overdue 3 s after its queued deadline
    "slow_notice_after_s": 3,
    "reconcile_max_tries": 2,
}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("delivery")
    with running_stack(redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, beat=True, **RECONCILER) as s:
        s.worker.stop()  # each test runs the workers it needs
        yield s


def start_worker(stack: RunningStack, name: str, queues: str | None = None) -> ChildProcess:
    """A worker like the stack's (``queues``: only these, comma-separated), ready to take tasks."""
    command = worker_command(Settings(worker_concurrency=1), hostname=f"{name}@%h")
    if queues is not None:
        command[command.index("-Q") + 1] = queues
    log_dir = Path(stack.worker.log_path).parent
    worker = ChildProcess(name, command, stack.env, log_dir)
    wait_until(lambda: "ready." in worker.output(), 90, what=f"worker {name}")
    return worker


def job_of(engine: Engine, file_unique_id: str) -> Job | None:
    with Session(engine) as session:
        return session.exec(select(Job).where(col(Job.telegram_file_unique_id) == file_unique_id)).first()


def queued_job(engine: Engine, sent: dict[str, Any]) -> Job:
    """The photo's job once the bot has queued it."""

    def queued() -> Job | None:
        job = job_of(engine, sent["photo"][-1]["file_unique_id"])
        return job if job is not None and job.queued_at is not None else None

    return wait_until(queued, 30, what="the bot to record and queue the photo")


def broker_dump(stack: RunningStack, queue: str) -> str:
    """A queue's messages as Redis holds them, their base64 bodies decoded (headers, properties, arguments)."""
    raw = redis.Redis.from_url(stack.redis_url, decode_responses=True).lrange(stack.key_prefix + queue, 0, -1)
    return "\n".join(str(m) + base64.b64decode(json.loads(m)["body"]).decode() for m in raw)


def database_dump(engine: Engine) -> str:
    with engine.connect() as connection:
        return repr(connection.execute(text("SELECT * FROM jobs")).all())


def status_message(stack: RunningStack, chat: int, photo_message_id: int) -> dict[str, Any]:
    """The bot's "Analysing..." message for the photo (edited into the answer), with its edit history."""
    (status,) = [
        m
        for m in stack.user.replies_to(chat, photo_message_id)
        if patient_texts.ANALYSING in [*m.get("edits", []), m["text"]]
    ]
    return status


def texts_of(status: dict[str, Any]) -> list[str]:
    return [*status.get("edits", []), status["text"]]


def final_text(stack: RunningStack, sent: dict[str, Any], expected: str) -> dict[str, Any]:
    """The photo's "Analysing..." message once it reads the answer ``expected`` and the job is recorded as
    answered (after the explanation picture, for a result)."""
    chat, photo_message_id = sent["chat"]["id"], sent["message_id"]

    def answered() -> dict[str, Any] | None:
        status = status_message(stack, chat, photo_message_id)
        job = job_of(stack.engine, sent["photo"][-1]["file_unique_id"])
        done = expected in status["text"] and job is not None and job.replied_at is not None
        return status if done else None

    return wait_until(answered, 90, what=f"the patient's answer ({expected[:30]}...)")


def test_a_photo_whose_message_was_lost_with_its_worker_is_queued_again_and_answered_once(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 7_100_000_001
    sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["low"].read_bytes())
    job = queued_job(stack.engine, sent)
    file_id = sent["photo"][-1]["file_id"]
    on_broker = broker_dump(stack, CLASSIFY_QUEUE)
    assert str(job.id) in on_broker and str(chat) not in on_broker and file_id not in on_broker
    at_rest = database_dump(stack.engine)
    assert job.delivery is not None and str(chat) not in at_rest and file_id not in at_rest, "sealed at rest"
    # The message is lost with the worker it was handed to (killed before it acknowledged it).
    redis.Redis.from_url(stack.redis_url).delete(stack.key_prefix + CLASSIFY_QUEUE)

    worker = start_worker(stack, "worker-lost-message")
    try:
        status = final_text(stack, sent, result_texts.RANKING_HEADING)
    finally:
        worker.stop()
    assert "queued again, try 1" in worker.log_path.read_text()
    assert texts_of(status)[:2] == [patient_texts.ANALYSING, plain_text(patient_texts.TAKING_LONGER, "HTML")]
    answers = [m for m in stack.user.bot_messages(chat) if result_texts.RANKING_HEADING in m.get("text", "")]
    assert len(answers) == 1, "answered once"
    answered = job_of(stack.engine, sent["photo"][-1]["file_unique_id"])
    assert answered is not None and answered.status == JobStatus.DONE and answered.replied_at is not None
    assert answered.requeues >= 1 and answered.delivery is None and answered.due_at is None, "erased once answered"


def test_a_photo_no_worker_analyses_gets_the_apology_after_the_last_try_and_nothing_after(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 7_100_000_002
    # This worker runs the reconciler (clinicians queue) but never analyses: the photo is stuck.
    reconciling = start_worker(stack, "worker-reconciler-only", queues=CLINICIANS_QUEUE)
    try:
        sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["low"].read_bytes())
        status = final_text(stack, sent, plain_text(patient_texts.STALLED, "HTML"))
    finally:
        reconciling.stop()
    assert plain_text(patient_texts.TAKING_LONGER, "HTML") in texts_of(status)
    job = job_of(stack.engine, sent["photo"][-1]["file_unique_id"])
    assert job is not None and (job.status, job.error_code) == (JobStatus.FAILED, FailureCode.STALLED)
    assert job.requeues == RECONCILER["reconcile_max_tries"] + 1 and job.delivery is None

    # A worker comes back and takes the queued tries: the patient was answered, nothing more is sent.
    queue = redis.Redis.from_url(stack.redis_url)
    assert queue.llen(stack.key_prefix + CLASSIFY_QUEUE) >= RECONCILER["reconcile_max_tries"]
    worker = start_worker(stack, "worker-after-apology")
    try:
        wait_until(lambda: queue.llen(stack.key_prefix + CLASSIFY_QUEUE) == 0, 60, what="the queued tries taken")
        wait_until(lambda: f"job {job.id}: already answered" in worker.output(), 30, what="a try found answered")
    finally:
        worker.stop()
    assert status_message(stack, chat, sent["message_id"])["text"] == plain_text(patient_texts.STALLED, "HTML")
    assert not [m for m in stack.user.bot_messages(chat) if result_texts.RANKING_HEADING in m.get("text", "")]


@pytest.mark.postgres
def test_the_database_away_for_a_few_seconds_loses_no_result(
    redis_url: str, tmp_path: Path, photos_by_risk: dict[str, Path]
) -> None:
    chat = 7_100_000_003
    # A cluster of its own (its default database): the test stops and starts it.
    with postgres_cluster() as cluster, running_stack(redis_url, cluster.url, tmp_path) as stack:
        worker_group = stack.worker.process.pid  # its own process group: the main process and its pool
        os.killpg(worker_group, signal.SIGSTOP)  # the photo waits on the broker until the database is away
        try:
            sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["low"].read_bytes())
            queued_job(stack.engine, sent)
            cluster.stop()
        finally:
            os.killpg(worker_group, signal.SIGCONT)
        try:
            wait_until(
                lambda: "the audit database did not answer" in stack.worker.output(), 60, what="a database retry"
            )
        finally:
            cluster.start()
        status = final_text(stack, sent, result_texts.RANKING_HEADING)
        assert patient_texts.ANALYSIS_FAILED not in texts_of(status)
        job = job_of(stack.engine, sent["photo"][-1]["file_unique_id"])
        assert job is not None and job.status == JobStatus.DONE and job.replied_at is not None
        assert job.delivery is None


def test_a_late_analysing_message_never_stays_under_an_answer_that_went_out_first(stack: RunningStack) -> None:
    """Under load the bot may wait for a chat's allowance before "Analysing..." (here Telegram asks it to wait
    12 s); meanwhile the reconciler queues the recorded photo and the worker answers it, as a new message
    threaded to the photo. The late status message then points to that answer, never "Analysing..." for ever."""
    worker = start_worker(stack, "late-status")
    try:
        chat = 8801
        consent(stack.user, chat)
        page = Image.new("RGB", (640, 480), (200, 200, 200))  # no skin: refused by the worker at once
        data = io.BytesIO()
        page.save(data, "PNG")
        stack.user.inject_fault("sendMessage", count=1, retry_after=12)
        sent = stack.user.send_photo(chat, data.getvalue())

        def answered() -> Job | None:
            job = job_of(stack.engine, sent["photo"][-1]["file_unique_id"])
            return job if job is not None and job.replied_at is not None else None

        assert wait_until(answered, 60, what="the photo answered by the worker").status == JobStatus.REJECTED
        wait_until(lambda: every_update_handled(stack.engine), 90, what="the bot to finish with the photo")
        replies = stack.user.replies_to(chat, sent["message_id"])
        refusals = [m for m in replies if m["text"].startswith("Sorry, I cannot analyse this photo")]
        assert len(refusals) == 1, replies
        assert not [m for m in stack.user.bot_messages(chat) if m.get("text", "").startswith("Analysing")], replies
    finally:
        worker.stop()


def every_update_handled(engine: Engine) -> bool:
    with Session(engine) as session:
        return all(row.processed_at is not None for row in session.exec(select(InboundUpdate)))
