"""Full-pipeline benchmark on this machine: sandbox Bot API -> bot -> Redis -> prefork workers -> reply.

Prints figures, asserts nothing. Starts its own redis-server, sandbox, workers and bot on free ports,
sends PHOTOS real HAM10000 photos from separate chats as fast as the sandbox takes them, and measures,
per photo, the time from the patient's message to the edited result, plus the overall throughput.

    python benchmarks/pipeline.py --photos 200 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bot.patients import PatientStore
from shared.audit import chat_reference
from shared.config import Settings, get_settings
from shared.db import build_engine
from shared.texts import patient as patient_texts
from skinsense.migrate import upgrade_database
from skinsense.sandbox import SANDBOX_TOKEN
from skinsense.stack import Stack, beat_command, redis_command, wait_for_port, worker_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def consent_all(database_url: str, chats: range, chat_hash_key: str | None = None) -> None:
    """Every benchmark patient has agreed to the privacy text already (as the bot records it; ``chat_hash_key``:
    the stack's, when it is not the one in the environment)."""
    patients = PatientStore(build_engine(database_url))
    key = chat_hash_key or Settings().chat_hash_key.get_secret_value()
    for chat in chats:
        patients.record_consent(chat_reference(chat, key), patient_texts.PRIVACY_VERSION)


class SandboxCalls:
    """The sandbox's log of Bot API calls, read as it grows (``/sandbox/calls?since=N``): a benchmark looks many
    times a second, and reading the whole log each time would load the very stack it measures."""

    def __init__(self, sandbox_url: str) -> None:
        self._http = httpx.Client(base_url=sandbox_url, timeout=30)
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        """Every call so far, oldest first (only those logged since the last look are fetched)."""
        with self._lock:
            response = self._http.get("/sandbox/calls", params={"since": len(self._calls)})
            response.raise_for_status()
            self._calls.extend(response.json())
            return list(self._calls)


def start_stack(
    stack: Stack,
    redis_port: int,
    sandbox_port: int,
    concurrency: int,
    redis_dir: Path | None = None,
    beat_schedule: Path | None = None,
) -> httpx.Client:
    """Redis, the sandbox, the workers and the bot on ``stack`` (its environment set); returns a client of the
    sandbox once the bot polls it. ``redis_dir``: Redis keeps its append-only file there, as under `skinsense up`
    (the chaos benchmark restarts it); else it keeps nothing. ``beat_schedule``: beat runs too (the reconciler
    and the clinician sweep, as under `skinsense up`), remembering its runs in that file."""
    if redis_dir is None:
        redis = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    else:
        redis = redis_command(redis_port, redis_dir)
    stack.start("redis", [*redis, "--loglevel", "warning"])
    stack.start("sandbox", [sys.executable, "-m", "skinsense.cli", "sandbox", "--port", str(sandbox_port)])
    wait_for_port(redis_port)
    wait_for_port(sandbox_port)
    command = worker_command(Settings(), concurrency=concurrency)
    stack.start("worker", [*command[:-2], "--loglevel", "WARNING"])
    if beat_schedule is not None:
        stack.start("beat", beat_command(beat_schedule))
    stack.start("bot", [sys.executable, "-m", "skinsense.cli", "bot"])
    http = httpx.Client(base_url=f"http://127.0.0.1:{sandbox_port}", timeout=30)
    while not http.get("/sandbox/calls", params={"method": "getUpdates"}).json():
        time.sleep(0.2)
    return http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    data_dir = get_settings().data_dir
    if data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR")
    # Lesion photos of both kinds, alternately (phone photos when PAD-UFES-20 sits beside HAM10000).
    ham = sorted((data_dir / "images").glob("*.jpg"))[: args.photos]
    phone = sorted((data_dir.parent / "pad_ufes" / "images").glob("*.jpg"))
    photos = [p for pair in zip(ham, phone, strict=False) for p in pair][: args.photos] if phone else ham
    photos += ham[len(photos) // 2 + 1 :][: args.photos - len(photos)]
    redis_port, sandbox_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="skinsense-bench-"))
    api = f"http://127.0.0.1:{sandbox_port}"
    stack = Stack()
    stack.environment.update(
        SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN,
        SKINSENSE_TELEGRAM_API_URL=api,
        SKINSENSE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SKINSENSE_DATABASE_URL=f"sqlite:///{workdir / 'audit.sqlite3'}",
        SKINSENSE_LOG_LEVEL="WARNING",
        # Patients who never answer the questionnaire: the photo-only result goes out as soon as it is ready
        # (one more task, finalize, than a patient who skipped before the analysis ended).
        SKINSENSE_QUESTIONNAIRE_TIMEOUT_S="0",
    )
    upgrade_database(f"sqlite:///{workdir / 'audit.sqlite3'}")  # bot and workers expect the migrated schema
    chats = range(100_000, 100_000 + len(photos))
    consent_all(f"sqlite:///{workdir / 'audit.sqlite3'}", chats)
    try:
        http = start_stack(stack, redis_port, sandbox_port, args.concurrency)
        time.sleep(5)  # let the worker processes load their models
        sent_at: dict[int, float] = {}
        started = time.time()
        for chat, photo in zip(chats, photos, strict=True):
            sent_at[chat] = time.time()
            http.post(f"/sandbox/chats/{chat}/photo", content=photo.read_bytes()).raise_for_status()
        # The sandbox logs each Bot API call with its time: the worker's edit is the result arriving.
        edits: list[dict[str, Any]] = []
        while len(edits) < len(sent_at):
            time.sleep(0.5)
            edits = http.get("/sandbox/calls", params={"method": "editMessageText"}).json()
        answered_at = {int(e["parameters"]["chat_id"]): float(e["time"]) for e in edits}
        latencies = {chat: answered_at[chat] - sent for chat, sent in sent_at.items()}
        elapsed = max(answered_at.values()) - started
    finally:
        stack.stop()
    values = sorted(latencies.values())
    print(f"photos: {len(values)}, worker processes: {args.concurrency}, cores: {os.cpu_count()}")
    print(f"throughput: {len(values) / elapsed:.1f} photos/s ({elapsed:.1f} s in all)")
    print(
        f"message -> result latency: median {statistics.median(values) * 1000:.0f} ms, "
        f"p95 {values[int(0.95 * (len(values) - 1))] * 1000:.0f} ms (queueing included: all sent at once)"
    )


if __name__ == "__main__":
    main()
