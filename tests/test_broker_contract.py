"""The broker contract (shared/queue.py): typed enqueue functions put typed requests on the right queue of
a real Redis, and the bot never needs the worker's code to do it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from shared.audit import MediaKind
from shared.config import Settings
from shared.queue import (
    CLASSIFY_QUEUE,
    CLASSIFY_TASK,
    CLINICIANS_QUEUE,
    NOTIFY_CLINICIANS_TASK,
    ClassifyPhotoRequest,
    NotifyCliniciansRequest,
    create_celery_app,
    enqueue_classification,
    enqueue_clinician_alert,
)

REPO = Path(__file__).resolve().parents[1]


def queued_messages(redis_url: str, queue: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def test_each_kind_of_work_lands_on_its_own_queue_as_a_typed_request(redis_url: str) -> None:
    app = create_celery_app(Settings(redis_url=redis_url))
    redis.Redis.from_url(redis_url).delete(CLASSIFY_QUEUE, CLINICIANS_QUEUE)
    classification = ClassifyPhotoRequest(
        job_id=uuid.uuid4(), chat_id=7, status_message_id=8, file_id="file-1", media_kind=MediaKind.PHOTO
    )
    alert = NotifyCliniciansRequest(job_id=uuid.uuid4(), file_id="file-2", media_kind=MediaKind.DOCUMENT)
    enqueue_classification(classification, app)
    enqueue_clinician_alert(alert, app)

    (classify_message,) = queued_messages(redis_url, CLASSIFY_QUEUE)
    (alert_message,) = queued_messages(redis_url, CLINICIANS_QUEUE)
    assert classify_message["headers"]["task"] == CLASSIFY_TASK  # type: ignore[index]
    assert alert_message["headers"]["task"] == NOTIFY_CLINICIANS_TASK  # type: ignore[index]
    args, _kwargs, _embed = json.loads(base64.b64decode(str(classify_message["body"])))
    assert ClassifyPhotoRequest.model_validate(args[0]) == classification, "ids only, never image bytes"


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
