"""Prometheus metrics and the health endpoints of the bot and the workers.

Labels never identify a patient: outcome and code come from shared/outcomes.py, stage, cause and queue are
fixed words, model version and runtime describe the software. The workers are prefork: each child process
writes its values into ``PROMETHEUS_MULTIPROC_DIR`` (set by the worker command, skinsense/stack.py) and the
worker's main process serves their sum (prometheus-client's multiprocess mode). The bot is one process and
serves its own registry.

Each process serves ``/metrics``, ``/health/live`` (the process answers) and ``/health/ready`` (200 when
ready, 503 with the reasons otherwise; JSON either way) from a small HTTP server on a thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Photo-to-reply: from the bot's job row (photo received) to the patient's reply, in seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Worker side
JOBS = Counter(
    "skinsense_jobs_total",
    "Jobs answered, by outcome (done, rejected, failed) and code (none: a result)",
    ["outcome", "code"],
)
PHOTO_TO_REPLY = Histogram(
    "skinsense_photo_to_reply_seconds",
    "From the photo's arrival at the bot to the patient's reply",
    buckets=LATENCY_BUCKETS,
)
STAGE = Histogram(
    "skinsense_stage_seconds",
    "Time per stage of a photo: download, screening (decode, gates and model), combine, reply",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
RETRIES = Counter(
    "skinsense_task_retries_total",
    "Retries of tasks and of Telegram calls (shared/telegram_calls.py), by cause (flood_control, network, database)",
    ["cause"],
)
TELEGRAM_FLOOD_CONTROL = Counter(
    "skinsense_telegram_flood_control_total", "Telegram 429 answers (RetryAfter), by process (bot, worker)", ["process"]
)
MODEL_INFO = Gauge(
    "skinsense_model_info",
    "The model a worker process serves (1 per loaded model)",
    ["version", "runtime"],
    multiprocess_mode="max",
)
# Drift (docs/operations.md, ops/prometheus-rules/drift.yml): what the patients' photos get, against what the
# model was measured on. Every result by photo kind and risk (refusals are skinsense_jobs_total{outcome=rejected});
# the validation figures of the served model, by kind: the share of each risk level, and of photos refused.
RESULTS = Counter(
    "skinsense_results_total", "Results answered, by the photo's kind and the risk told", ["photo_kind", "risk"]
)
VALIDATION_SHARE = Gauge(
    "skinsense_validation_share",
    "The served model's validation figures, by photo kind: measure risk_low, risk_medium, risk_high, refused",
    ["photo_kind", "measure"],
    multiprocess_mode="max",
)
# Bot side
# Clinician review times: from a high-risk alert to its claim ("I'll review") and to its resolution, in seconds
# (observed by the bot, which handles the buttons; `skinsense audit review-times` reports the same from the DB).
REVIEW_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400)
CLINICIAN_DELIVERIES_GIVEN_UP = Counter(
    "skinsense_clinician_deliveries_given_up_total",
    "Clinician alert deliveries given up: Telegram refused them MAX_DELIVERY_ATTEMPTS times (a chat the bot left?)",
)
CLINICIAN_REVIEW = Histogram(
    "skinsense_clinician_review_seconds",
    "From a clinician alert to its claim (step=claim) and to its resolution (step=resolution)",
    ["step"],
    buckets=REVIEW_BUCKETS,
)
CLINICIAN_REFUSED = Counter(
    "skinsense_clinician_refused_total",
    "Clinician buttons (what=press), commands (what=command) and replies to a write-to-the-patient prompt "
    "(what=reply) refused: not an allow-listed clinician; every one "
    "is counted here, while the audit keeps a sample (at most one row per chat every 10 minutes)",
    ["what"],
)
PHOTOS_RECEIVED = Counter(
    "skinsense_bot_photos_total",
    "Photos and image files at the bot, by what it did (queued, limited, refused, enqueue_delayed)",
    ["result"],
)
PRESSES_REFUSED = Counter(
    "skinsense_bot_presses_refused_total",
    "Patients' button presses refused (answered, nothing changed), by buttons (questionnaire, consent, delete, "
    "history, other) and why (not_this_chat: callback data naming another chat's job; not_private: a group chat)",
    ["buttons", "why"],
)
UPDATES_DROPPED = Counter(
    "skinsense_bot_updates_dropped_total",
    "Updates the bot dropped unanswered, by why (chat_over_limit: a chat or group member past its updates a "
    "minute, bot/fairness.py)",
    ["reason"],
)
SHARED_CHAT_MESSAGES = Counter(
    "skinsense_bot_shared_chat_messages_total",
    "Messages in group chats and channels that are not clinician chats: never handled, by whether the chat was "
    "told (told) or had been told within the hour (silent)",
    ["reply"],
)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the block's wall time as ``stage`` (also when it raises)."""
    start = perf_counter()
    try:
        yield
    finally:
        STAGE.labels(stage=stage).observe(perf_counter() - start)


def count_job(outcome: str, code: str | None) -> None:
    JOBS.labels(outcome=outcome, code=code or "none").inc()


def exposition_registry() -> CollectorRegistry | None:
    """The registry to serve: the children's values in multiprocess mode, else the process's own (None)."""
    if not os.environ.get(MULTIPROCESS_ENV):
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def model_loaded() -> bool:
    """Whether a model is loaded: in multiprocess mode, by any child process of this worker."""
    registry = exposition_registry()
    families = registry.collect() if registry is not None else MODEL_INFO.collect()
    return any(
        sample.value >= 1 for family in families if family.name == "skinsense_model_info" for sample in family.samples
    )


def broker_reachable(redis_url: str) -> str | None:
    """None when Redis answers a PING within two seconds; else why not."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        return f"broker: {type(error).__name__}"
    return None


def database_reachable(database_url: str) -> str | None:
    from sqlalchemy import text

    from shared.db import build_engine

    # A connection of its own, closed after: the worker's main process asks this from its health thread, and
    # must hold no pooled connection when the pool forks its children.
    try:
        engine = build_engine(database_url, pooled=False)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as error:
        return f"database: {type(error).__name__}"
    return None


class QueueDepthCollector:
    """``skinsense_queue_depth{queue}``: messages waiting in each worker queue, read from Redis at scrape time
    (kombu keeps a queue as a Redis list under the deployment's key prefix and the queue's name)."""

    def __init__(self, redis_url: str, key_prefix: str, queues: tuple[str, ...]) -> None:
        self.redis_url, self.key_prefix, self.queues = redis_url, key_prefix, queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import redis

        depth = GaugeMetricFamily("skinsense_queue_depth", "Messages waiting in each worker queue", labels=["queue"])
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                for queue in self.queues:
                    depth.add_metric([queue], float(client.llen(f"{self.key_prefix}{queue}")))
            finally:
                client.close()
        except Exception as error:  # the broker is away: readiness says so; the rest of /metrics still answers
            log.warning("queue depth not read: %s", type(error).__name__)
            return
        yield depth


ReadinessCheck = Callable[[], list[str]]  # the reasons it is not ready; empty: ready


def serve_metrics_and_health(
    address: str, port: int, readiness: ReadinessCheck, queue_depth: QueueDepthCollector | None = None
) -> ThreadingHTTPServer | None:
    """Serve /metrics, /health/live and /health/ready on a daemon thread; returns the server, or None when the
    port is taken (logged: the process serves patients all the same)."""
    extra = CollectorRegistry(auto_describe=False)
    if queue_depth is not None:
        extra.register(queue_depth)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                registry = exposition_registry()
                body = generate_latest(registry) if registry is not None else generate_latest()
                self._answer(200, body + generate_latest(extra), CONTENT_TYPE_LATEST)
            elif path == "/health/live":
                self._answer(200, b'{"live": true}\n', "application/json")
            elif path == "/health/ready":
                problems = readiness()
                status = 200 if not problems else 503
                body = json.dumps({"ready": not problems, "problems": problems}).encode() + b"\n"
                self._answer(status, body, "application/json")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the logs

    try:
        server = ThreadingHTTPServer((address, port), Handler)
    except OSError as error:
        log.error("metrics and health not served: cannot listen on %s:%d (%s)", address, port, error.strerror)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-and-health", daemon=True).start()
    log.info("metrics and health on http://%s:%d (/metrics, /health/ready)", address, server.server_address[1])
    return server
