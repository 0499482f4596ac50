"""The broker contract (shared/queue.py): typed enqueue functions put typed requests on the right queue of
a real Redis, and the bot never needs the worker's code to do it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from kombu.entity import Queue

from shared.config import Settings
from shared.queue import (
    CLASSIFY_QUEUE,
    CLASSIFY_TASK,
    CLINICIANS_QUEUE,
    NOTIFY_CLINICIANS_TASK,
    ClassifyPhotoRequest,
    FinalizeResultRequest,
    NotifyCliniciansRequest,
    create_celery_app,
    enqueue_classification,
    enqueue_clinician_alert,
    oldest_waiting_published_at,
)

REPO = Path(__file__).resolve().parents[2]


def queued_messages(redis_url: str, queue: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def test_each_kind_of_work_lands_on_its_own_queue_as_a_typed_request(redis_url: str) -> None:
    app = create_celery_app(Settings(redis_url=redis_url))
    redis.Redis.from_url(redis_url).delete(CLASSIFY_QUEUE, CLINICIANS_QUEUE)
    classification = ClassifyPhotoRequest(job_id=uuid.uuid4())
    alert = NotifyCliniciansRequest(job_id=uuid.uuid4())
    enqueue_classification(classification, app)
    enqueue_clinician_alert(alert, app)

    (classify_message,) = queued_messages(redis_url, CLASSIFY_QUEUE)
    (alert_message,) = queued_messages(redis_url, CLINICIANS_QUEUE)
    assert classify_message["headers"]["task"] == CLASSIFY_TASK  # type: ignore[index]
    assert alert_message["headers"]["task"] == NOTIFY_CLINICIANS_TASK  # type: ignore[index]
    args, _kwargs, _embed = json.loads(base64.b64decode(str(classify_message["body"])))
    assert args[0] == {"job_id": str(classification.job_id)}, "the job id only: no chat id, file id or image bytes"
    assert ClassifyPhotoRequest.model_validate(args[0]) == classification


def test_a_request_in_the_old_shape_is_read_and_never_sent_again() -> None:
    """Messages queued before delivery moved to the job row carry the chat and file ids: still accepted (the
    worker adopts them onto the row), never written back to the broker."""
    job_id = uuid.uuid4()
    old = {"job_id": str(job_id), "chat_id": 7, "status_message_id": 8, "file_id": "file-1", "media_kind": "photo"}
    for model in (ClassifyPhotoRequest, FinalizeResultRequest):
        request = model.model_validate(old)
        assert request.job_id == job_id and request.legacy_delivery() == (7, "file-1", 8)
        assert request.model_dump(mode="json") == {"job_id": str(job_id)}
        assert "file-1" not in repr(request)
    assert ClassifyPhotoRequest(job_id=job_id).legacy_delivery() is None


def test_the_bot_never_imports_the_worker() -> None:
    sources = "\n".join(path.read_text() for path in (REPO / "bot").rglob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+worker\b", sources, re.MULTILINE)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bot.app, bot.handlers; print([m for m in sys.modules if m.split('.')[0] == 'worker'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    assert loaded == "[]"


def test_the_headers_show_the_job_id_only(redis_url: str) -> None:
    prefix = f"repr-{uuid.uuid4().hex[:8]}:"
    app = create_celery_app(Settings(redis_url=redis_url, redis_key_prefix=prefix))
    request = ClassifyPhotoRequest(job_id=uuid.uuid4())
    enqueue_classification(request, app)
    (message,) = queued_messages(redis_url, prefix + CLASSIFY_QUEUE)
    headers = message["headers"]
    assert headers["argsrepr"] == f"(job {request.job_id})" and headers["kwargsrepr"] == "{}"  # type: ignore[index]


def test_two_deployments_with_different_key_prefixes_never_share_queues(redis_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    clinic_a = create_celery_app(Settings(redis_url=redis_url, redis_key_prefix=f"a-{tag}:"))
    clinic_b = create_celery_app(Settings(redis_url=redis_url, redis_key_prefix=f"b-{tag}:"))
    for_a = NotifyCliniciansRequest(job_id=uuid.uuid4())
    for_b = NotifyCliniciansRequest(job_id=uuid.uuid4())
    enqueue_clinician_alert(for_a, clinic_a)
    enqueue_clinician_alert(for_b, clinic_b)

    def received(app: Celery) -> list[uuid.UUID]:
        """What a consumer of this deployment takes off its clinicians queue (through Celery's own transport)."""
        jobs = []
        with app.connection_for_read() as connection:
            queue: Any = Queue(CLINICIANS_QUEUE).bind(connection.default_channel)  # type: ignore[no-untyped-call]
            while (message := queue.get(no_ack=True)) is not None:
                args, _kwargs, _embed = message.decode()
                jobs.append(NotifyCliniciansRequest.model_validate(args[0]).job_id)
        return jobs

    assert received(clinic_a) == [for_a.job_id]
    assert received(clinic_b) == [for_b.job_id]
    keys = {str(key) for key in redis.Redis.from_url(redis_url, decode_responses=True).keys(f"*{tag}*")}
    assert all(key.startswith((f"a-{tag}:", f"b-{tag}:")) for key in keys), keys


def test_the_oldest_waiting_message_says_when_it_was_published(redis_url: str) -> None:
    """The reconciler's view of a backlog: the publish time of the message the workers will take next."""
    prefix = f"front-{uuid.uuid4().hex[:6]}:"
    app = create_celery_app(Settings(redis_url=redis_url, redis_key_prefix=prefix))
    assert oldest_waiting_published_at(redis_url, prefix) is None, "nothing waits"
    before = datetime.now(UTC)
    enqueue_classification(ClassifyPhotoRequest(job_id=uuid.uuid4()), app)
    first_published = datetime.now(UTC)
    time.sleep(0.05)
    enqueue_classification(ClassifyPhotoRequest(job_id=uuid.uuid4()), app)
    front = oldest_waiting_published_at(redis_url, prefix)
    assert front is not None and before <= front <= first_published, "the first message, not the second"
    # A worker takes the oldest (kombu takes from the list's right end): the front moves to the second message.
    redis.Redis.from_url(redis_url).rpop(f"{prefix}{CLASSIFY_QUEUE}")
    moved = oldest_waiting_published_at(redis_url, prefix)
    assert moved is not None and moved > first_published
