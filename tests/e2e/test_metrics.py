"""Metrics and health on the real stack: the worker's multiprocess /metrics and the bot's own move as photos go
through; /health/ready says ready when the model is loaded and the broker and database answer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from shared.config import Settings
from shared.metrics import QueueDepthCollector, broker_reachable, database_reachable, serve_metrics_and_health
from shared.outcomes import RefusalCode
from shared.queue import (
    CLASSIFY_QUEUE,
    CLINICIANS_QUEUE,
    WORKER_QUEUES,
    NotifyCliniciansRequest,
    create_celery_app,
    enqueue_clinician_alert,
)
from tests.auxil.patient import consent, send_photo_skipping_questions
from tests.auxil.services import child_env, free_port, wait_until
from tests.auxil.stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("metrics-stack")
    with running_stack(redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir) as running:
        yield running


def port_of(stack: RunningStack, process: str) -> int:
    return int(stack.env[f"SKINSENSE_{process.upper()}_METRICS_PORT"])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def ready_answer(port: int) -> str | None:
    status, body = get(port, "/health/ready")
    return body if status == 200 else None


def test_worker_and_bot_say_ready(stack: RunningStack) -> None:
    for process in ("worker", "bot"):
        body = wait_until(lambda p=process: ready_answer(port_of(stack, p)), 60, what=f"the {process} ready")  # type: ignore[misc]
        assert json.loads(body) == {"ready": True, "problems": []}, process
        assert get(port_of(stack, process), "/health/live")[0] == 200


def test_metric_values_move_as_photos_go_through(stack: RunningStack, data_dir: Path) -> None:
    worker_port, bot_port = port_of(stack, "worker"), port_of(stack, "bot")
    wait_until(lambda: get(worker_port, "/health/ready")[0] == 200, 60, what="the worker ready")
    worker_before, bot_before = scrape(worker_port), scrape(bot_port)

    photo = next((data_dir / "images").glob("*.jpg")).read_bytes()
    sent = send_photo_skipping_questions(stack.user, 4101, photo)
    stack.user.wait_for_reply(4101, sent["message_id"], timeout_s=90)
    dark = io.BytesIO()
    Image.new("RGB", (320, 320), (2, 2, 2)).save(dark, "JPEG")
    consent(stack.user, 4102)
    refused = stack.user.send_photo(4102, dark.getvalue())  # refused by the gates: no questionnaire to skip
    stack.user.wait_for_reply(4102, refused["message_id"], timeout_s=90)

    def moved() -> Samples | None:
        samples = scrape(worker_port)
        answered = total(samples, "skinsense_jobs_total") - total(worker_before, "skinsense_jobs_total")
        return samples if answered >= 2 else None

    worker_after = wait_until(moved, 30, what="the worker's counters")
    done = ("skinsense_jobs_total", {"outcome": "done", "code": "none"})
    assert value(worker_after, done[0], **done[1]) == value(worker_before, done[0], **done[1]) + 1
    rejected = {
        dict(labels)["code"]: v - value(worker_before, name, **dict(labels))
        for (name, labels), v in worker_after.items()
        if name == "skinsense_jobs_total" and dict(labels)["outcome"] == "rejected"
    }
    moved_codes = [code for code, delta in rejected.items() if delta == 1]
    assert len(moved_codes) == 1 and moved_codes[0] in {c.value for c in RefusalCode}, rejected

    results = {
        labels: v - value(worker_before, name, **dict(labels))
        for (name, labels), v in worker_after.items()
        if name == "skinsense_results_total"
    }
    assert sorted(results.values())[-1:] == [1] and sum(results.values()) == 1, "the one result, by kind and risk"
    baseline = {
        dict(labels)["measure"] for (name, labels), _ in worker_after.items() if name == "skinsense_validation_share"
    }
    assert baseline == {"risk_low", "risk_medium", "risk_high", "refused"}, "drift's baseline is exported"
    histogram = "skinsense_photo_to_reply_seconds_count"
    assert value(worker_after, histogram) == value(worker_before, histogram) + 2
    assert value(worker_after, "skinsense_photo_to_reply_seconds_sum") > value(
        worker_before, "skinsense_photo_to_reply_seconds_sum"
    )
    for stage, photos in (("download", 2), ("screening", 2), ("reply", 2), ("combine", 1)):
        count = "skinsense_stage_seconds_count"
        assert value(worker_after, count, stage=stage) == value(worker_before, count, stage=stage) + photos, stage
    (model,) = [labels for (name, labels), v in worker_after.items() if name == "skinsense_model_info" and v == 1]
    assert {key for key, _ in model} == {"version", "runtime"}
    depth = {dict(labels)["queue"]: v for (name, labels), v in worker_after.items() if name == "skinsense_queue_depth"}
    assert depth == dict.fromkeys(WORKER_QUEUES, 0.0), "every queue reported, drained once the photos were answered"

    bot_after = scrape(bot_port)
    queued = "skinsense_bot_photos_total"
    assert value(bot_after, queued, result="queued") == value(bot_before, queued, result="queued") + 2
    chat_ids = ("4101", "4102")
    exposed = get(worker_port, "/metrics")[1] + get(bot_port, "/metrics")[1]
    assert not any(chat_id in exposed for chat_id in chat_ids), "nothing identifying a patient in metrics"


def test_readiness_names_an_unreachable_broker_and_database() -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    assert broker_reachable(dead_redis) == "broker: ConnectionError"
    problem = database_reachable(f"postgresql://nobody@127.0.0.1:{free_port()}/nothing")
    assert problem is not None and problem.startswith("database:")

    port = free_port()
    server = serve_metrics_and_health(
        "127.0.0.1", port, lambda: [problem for problem in [broker_reachable(dead_redis)] if problem]
    )
    assert server is not None
    try:
        status, body = get(port, "/health/ready")
        assert status == 503 and json.loads(body) == {"ready": False, "problems": ["broker: ConnectionError"]}
    finally:
        server.shutdown()
        server.server_close()


def test_queue_depth_counts_the_messages_waiting_in_each_queue(redis_url: str) -> None:
    """On the tests' own Redis, with a deployment prefix no worker consumes: what waits is what is counted."""
    prefix = f"depth-{uuid.uuid4().hex[:8]}:"
    app = create_celery_app(Settings(redis_url=redis_url, redis_key_prefix=prefix))
    for _ in range(3):
        enqueue_clinician_alert(NotifyCliniciansRequest(job_id=uuid.uuid4()), app)
    (family,) = QueueDepthCollector(redis_url, prefix, WORKER_QUEUES).collect()
    depth = {sample.labels["queue"]: sample.value for sample in family.samples}
    assert depth == {CLASSIFY_QUEUE: 0, CLINICIANS_QUEUE: 3}
    assert list(QueueDepthCollector("redis://127.0.0.1:1/0", prefix, WORKER_QUEUES).collect()) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_the_worker_health_check_imports_nothing_once_set_up(
    database: str, redis_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    """The worker's main process answers /health/ready from a thread while its pool forks children: a module
    that thread imported lazily could be mid-import at a fork, and the child would hang on its import lock for
    ever (seen: both children stuck importing the PostgreSQL dialect). So every import happens at set-up."""
    database_url = postgres_admin_url if database == "postgresql" else f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    # The same kind of database, not answering (SQLite: a file in a folder that cannot be made).
    gone_url = (
        f"postgresql://postgres@127.0.0.1:{free_port()}/gone" if database == "postgresql" else "sqlite:////proc/x/a"
    )
    script = (
        "import json, sys\n"
        "from shared.config import get_settings\n"
        "from shared.metrics import database_reachable\n"
        "from worker.celery_app import worker_readiness\n"
        "readiness = worker_readiness(get_settings())\n"
        "before = set(sys.modules)\n"
        "problems = readiness()\n"
        f"gone = database_reachable({gone_url!r})\n"
        "print(json.dumps({'problems': problems, 'gone': gone, 'imported': sorted(set(sys.modules) - before)}))\n"
    )
    env = child_env(database_url=database_url, redis_url=redis_url, worker_metrics_port=0)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["problems"] == ["model: not loaded yet"], "broker and database answer; no child in this test"
    assert report["gone"] is not None and report["gone"].startswith("database: ")
    assert report["imported"] == [], "imported by the health check after set-up"
