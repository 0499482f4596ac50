"""Load benchmark: the real stack on free ports (benchmarks/pipeline.py's set-up), photos at steady rates and as
a burst, then the bare decode+gates+model throughput on the same cores. Prints figures, asserts nothing; never
run by the tests or CI.

Per phase: photo-to-reply p50/p95/p99 (the patient's message to the worker's edit, as the sandbox logged them),
throughput (photos answered per second of the phase), backlog (photos sent but not answered when the phase's
sending ended, and at most while it ran), worker wall time per photo per stage (the workers' own metrics) and
CPU seconds per photo of the whole stack (bot, workers, sandbox, Redis; from /proc), and the largest resident
set among the worker's processes after each phase (memory over many photos).

    python benchmarks/load.py --seconds 10 --rates 5,10,20,40 --burst 200 --concurrency 2
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.config import get_settings
from skinsense.migrate import upgrade_database
from skinsense.sandbox import SANDBOX_TOKEN
from skinsense.stack import Stack
from skinsense.worker_process import one_blas_thread_per_process

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from pipeline import SandboxCalls, consent_all, free_port, start_stack

STAGES = ("download", "screening", "combine", "reply", "explanation")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def descendants(root: int) -> set[int]:
    """The process and all its descendants (Linux /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found = {root}
    while grown := {pid for pid, ppid in parent.items() if ppid in found} - found:
        found |= grown
    return found


def worker_rss_mb(worker_pid: int) -> float:
    """The largest resident set of the worker's processes (the main process and its pool), in MB."""
    sizes = [0.0]
    for pid in descendants(worker_pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
    return max(sizes)


def stack_cpu_seconds(roots: Sequence[int]) -> float:
    """utime + stime of the given processes and all their descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    wanted = set(roots)
    changed = True
    while changed:
        found = {pid for pid, ppid in parent.items() if ppid in wanted} - wanted
        changed = bool(found)
        wanted |= found
    return sum(cpu.get(pid, 0.0) for pid in wanted)


def stage_sums(worker_metrics: str) -> dict[str, tuple[float, float]]:
    """{stage: (seconds in all, count)} from the workers' /metrics."""
    sums: dict[str, list[float]] = {stage: [0.0, 0.0] for stage in STAGES}
    for family in text_string_to_metric_families(httpx.get(worker_metrics, timeout=10).text):
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if stage in sums and sample.name == "skinsense_stage_seconds_sum":
                sums[stage][0] = sample.value
            elif stage in sums and sample.name == "skinsense_stage_seconds_count":
                sums[stage][1] = sample.value
    return {stage: (total, count) for stage, (total, count) in sums.items()}


# What counts against Telegram's allowance for a bot (about 30 a second in all, edits counted in practice).
PATIENT_MESSAGES = ("sendMessage", "editMessageText", "editMessageReplyMarkup", "sendPhoto", "sendDocument")


class Phase:
    def __init__(self, name: str, photos: list[bytes], chats: range, rate: float | None) -> None:
        self.name, self.photos, self.chats, self.rate = name, photos, chats, rate
        self.sent_at: dict[int, float] = {}
        self.max_backlog = 0


class ResultEdits:
    """When each chat's "Analysing..." was last edited (its answer), from the sandbox's call log."""

    def __init__(self, calls: SandboxCalls) -> None:
        self.calls, self._seen, self._times = calls, 0, dict[int, float]()
        self._lock = threading.Lock()  # the backlog sampler's thread reads it too

    def answered(self, chats: range) -> dict[int, float]:
        with self._lock:
            calls = self.calls.read()
            for call in calls[self._seen :]:
                if call["method"] == "editMessageText":
                    chat = int(call["parameters"]["chat_id"])
                    self._times[chat] = max(self._times.get(chat, 0.0), float(call["time"]))
            self._seen = len(calls)
            return {chat: at for chat, at in self._times.items() if chat in chats}


def cpu_by_service(services: dict[str, int]) -> dict[str, float]:
    return {name: stack_cpu_seconds([pid]) for name, pid in services.items()}


def run_phase(
    http: httpx.Client, edits: ResultEdits, phase: Phase, worker_metrics: str, services: dict[str, int]
) -> dict[str, Any]:
    stages_before, cpu_before = stage_sums(worker_metrics), cpu_by_service(services)
    stop_sampling = threading.Event()

    def sample_backlog() -> None:
        while not stop_sampling.wait(0.5):
            done = len(edits.answered(phase.chats))
            phase.max_backlog = max(phase.max_backlog, len(phase.sent_at) - done)

    sampler = threading.Thread(target=sample_backlog, daemon=True)
    sampler.start()
    started = time.time()
    for index, (chat, photo) in enumerate(zip(phase.chats, phase.photos, strict=True)):
        if phase.rate is not None:
            delay = started + index / phase.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        phase.sent_at[chat] = time.time()
        http.post(f"/sandbox/chats/{chat}/photo", content=photo).raise_for_status()
    sending_ended = time.time()
    backlog_at_end = len(phase.sent_at) - len(edits.answered(phase.chats))
    deadline = time.time() + 300
    replies = edits.answered(phase.chats)
    while len(replies) < len(phase.sent_at) and time.time() < deadline:
        time.sleep(0.5)
        replies = edits.answered(phase.chats)
    stop_sampling.set()
    sampler.join()
    time.sleep(1.0)  # the explanation pictures follow the results
    chats = {str(chat) for chat in phase.chats}
    spent = [
        call
        for call in edits.calls.read()
        if call["method"] in PATIENT_MESSAGES
        and str(call["parameters"].get("chat_id")) in chats
        and not call.get("fault")
    ]
    cpu_after = cpu_by_service(services)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in services}
    stages_after = stage_sums(worker_metrics)
    latencies = [replies[chat] - sent for chat, sent in phase.sent_at.items() if chat in replies]
    last = max(replies.values(), default=sending_ended)
    stage_ms = {
        stage: 1000 * (stages_after[stage][0] - stages_before[stage][0]) / count
        for stage in STAGES
        if (count := stages_after[stage][1] - stages_before[stage][1]) > 0
    }
    return {
        "phase": phase.name,
        "sent": len(phase.sent_at),
        "answered": len(replies),
        "offered_per_s": len(phase.sent_at) / max(sending_ended - started, 1e-9),
        "throughput_per_s": len(replies) / max(last - started, 1e-9),
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else float("nan"),
        "p95_ms": 1000 * percentile(latencies, 0.95) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else float("nan"),
        "backlog_end": backlog_at_end,
        "backlog_max": max(phase.max_backlog, backlog_at_end),
        "cpu_s_per_photo": sum(cpu.values()) / max(len(replies), 1),
        "cpu_ms_per_photo_by_service": {name: 1000 * seconds / max(len(replies), 1) for name, seconds in cpu.items()},
        "stage_ms": stage_ms,
        "messages_per_photo": len(spent) / max(len(phase.sent_at), 1),
    }


_bare_classifier: Any = None


def _load_model() -> None:
    from models.serving.inference import Classifier

    global _bare_classifier
    settings = get_settings()
    _bare_classifier = Classifier(runtime=settings.model_runtime, threads=settings.model_threads)


def _screen_many(photos: list[bytes]) -> int:
    from models.serving.screening import screen_photo
    from shared.images import UnreadableImage

    for data in photos:
        with contextlib.suppress(UnreadableImage):
            screen_photo(data, _bare_classifier)
    return len(photos)


def bare_throughput(photos: list[bytes], processes: int, seconds: float) -> float:
    """decode + gates + model (models.serving.screening.screen_photo, as the worker calls it) in ``processes`` processes
    with a warm model each, nothing else: photos per second."""
    with multiprocessing.get_context("fork").Pool(processes, initializer=_load_model) as pool:
        pool.map(_screen_many, [photos[:2]] * processes)  # warm-up
        chunks = [photos[i : i + 8] for i in range(0, len(photos), 8)]
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += sum(pool.map(_screen_many, chunks))
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="5,10,20,40", help="steady rates, photos per second")
    parser.add_argument("--seconds", type=float, default=10, help="length of each steady phase")
    parser.add_argument("--burst", type=int, default=200, help="photos sent at once after the steady phases")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (and bare processes)")
    parser.add_argument("--bare-seconds", type=float, default=10)
    parser.add_argument(
        "--telegram-messages-per-s",
        type=float,
        default=30,
        help="the deployment's message budget (Telegram's limit: 30; a photo costs about 3 messages, so about 10 "
        "photos/s at most); set it high (1000) to measure what the cores can do",
    )
    args = parser.parse_args()
    one_blas_thread_per_process()  # the bare model runs as in the workers (skinsense/worker_process.py)
    data_dir = get_settings().data_dir
    if data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR")
    rates = [float(rate) for rate in args.rates.split(",")]
    pool = [p.read_bytes() for p in sorted((data_dir / "images").glob("*.jpg"))[:400]]
    phases: list[Phase] = []
    first_chat = 200_000
    for rate in rates:
        count = int(rate * args.seconds)
        phases.append(
            Phase(
                f"{rate:g}/s", [pool[i % len(pool)] for i in range(count)], range(first_chat, first_chat + count), rate
            )
        )
        first_chat += count
    if args.burst:
        burst_photos = [pool[i % len(pool)] for i in range(args.burst)]
        phases.append(Phase(f"burst {args.burst}", burst_photos, range(first_chat, first_chat + args.burst), None))
        first_chat += args.burst

    redis_port, sandbox_port, metrics_port = free_port(), free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="skinsense-load-"))
    database_url = f"sqlite:///{workdir / 'audit.sqlite3'}"
    api = f"http://127.0.0.1:{sandbox_port}"
    stack = Stack()
    stack.environment.update(
        SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN,
        SKINSENSE_TELEGRAM_API_URL=api,
        SKINSENSE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SKINSENSE_DATABASE_URL=database_url,
        SKINSENSE_LOG_LEVEL="WARNING",
        SKINSENSE_QUESTIONNAIRE_TIMEOUT_S="0",  # patients who never answer: the result goes out when ready
        SKINSENSE_PHOTOS_PER_CHAT_PER_HOUR="0",
        SKINSENSE_TELEGRAM_MESSAGES_PER_S=str(args.telegram_messages_per_s),
        SKINSENSE_WORKER_METRICS_PORT=str(metrics_port),
        SKINSENSE_BOT_METRICS_PORT=str(free_port()),
    )
    upgrade_database(database_url)
    consent_all(database_url, range(200_000, first_chat + 20))  # and the warm-up's 20 chats after the phases
    results: list[dict[str, Any]] = []
    try:
        http = start_stack(stack, redis_port, sandbox_port, args.concurrency)
        edits = ResultEdits(SandboxCalls(api))
        health = f"http://127.0.0.1:{metrics_port}/health/ready"
        while True:  # models loaded, broker and database answer
            with contextlib.suppress(httpx.HTTPError):  # refused until the worker serves its health
                if httpx.get(health, timeout=10).status_code == 200:
                    break
            time.sleep(0.5)
        services = {name: process.pid for name, process in stack.processes}
        worker_pid = next(process.pid for name, process in stack.processes if name == "worker")
        # Not measured: the first photos pay for connections, caches and the model's first runs.
        warm_up = Phase("warm-up", pool[:20], range(first_chat, first_chat + 20), 5)
        run_phase(http, edits, warm_up, f"http://127.0.0.1:{metrics_port}/metrics", services)
        rss_at_start = worker_rss_mb(worker_pid)
        for phase in phases:
            results.append(run_phase(http, edits, phase, f"http://127.0.0.1:{metrics_port}/metrics", services))
            results[-1]["worker_rss_mb"] = worker_rss_mb(worker_pid)
            print(f"  {phase.name}: done", file=sys.stderr, flush=True)
    finally:
        stack.stop()
    bare = bare_throughput(pool[:64], args.concurrency, args.bare_seconds)

    print(
        f"cores: {os.cpu_count()}, worker processes: {args.concurrency}, steady phases of {args.seconds:g} s, "
        f"message budget {args.telegram_messages_per_s:g}/s"
    )
    header = f"{'phase':<10} {'sent':>5} {'offered/s':>9} {'answered/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    print(
        header + f" {'backlog end/max':>15} {'CPU s/photo':>11} {'RSS MB':>6} {'msgs/photo':>10}  worker stage ms/photo"
    )
    for r in results:
        stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in r["stage_ms"].items())
        print(
            f"{r['phase']:<10} {r['sent']:>5} {r['offered_per_s']:>9.1f} {r['throughput_per_s']:>10.1f} "
            f"{r['p50_ms']:>7.0f} {r['p95_ms']:>7.0f} {r['p99_ms']:>7.0f} "
            f"{str(r['backlog_end']) + '/' + str(r['backlog_max']):>15} {r['cpu_s_per_photo']:>11.3f} "
            f"{r['worker_rss_mb']:>6.0f} {r['messages_per_photo']:>10.1f}  {stages}"
        )
    print("CPU ms per photo by process (with its children):")
    for r in results:
        by_service = ", ".join(f"{name} {ms:.1f}" for name, ms in r["cpu_ms_per_photo_by_service"].items())
        print(f"  {r['phase']:<10} {by_service}")
    print(
        f"largest worker process RSS: {rss_at_start:.0f} MB once ready, {results[-1]['worker_rss_mb']:.0f} MB after "
        f"{sum(r['sent'] for r in results)} photos"
    )
    saturation = max(r["throughput_per_s"] for r in results)
    print(f"bare decode+gates+model, {args.concurrency} processes: {bare:.1f} photos/s")
    print(f"best pipeline throughput {saturation:.1f} photos/s; ratio to bare {saturation / bare:.2f}")


if __name__ == "__main__":
    main()
