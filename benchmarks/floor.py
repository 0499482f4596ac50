"""What every photo must cost, part by part: the CPU of one Bot API call (client, sandbox and Redis sides), one
audit transaction, one Celery task, the bare decode+gates+model and the explanation picture, each measured on
its own, in one process, on the real parts (redis-server, the sandbox, a migrated SQLite database, a prefork
Celery worker, the shipped model). Multiplied by how many of each one photo needs at the least, they give a
floor under the whole stack's CPU per photo, and so a ceiling on the pipeline's throughput against the bare
model on the same cores (issue 12's ratio). Prints figures, asserts nothing; never run by the tests or CI.

    python benchmarks/floor.py --calls 300
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from load import stack_cpu_seconds
from pipeline import free_port

from shared.audit import MediaKind
from shared.config import get_settings
from shared.db import build_engine
from shared.job_store import Delivery, JobStore
from shared.queue import ClassifyPhotoRequest, enqueue_classification, producer_app
from skinsense.migrate import upgrade_database
from skinsense.sandbox import SANDBOX_TOKEN
from skinsense.stack import Stack, wait_for_port, worker_command
from skinsense.worker_process import one_blas_thread_per_process

if TYPE_CHECKING:
    from models.serving.inference import Prediction

# The least one photo needs (a patient who skips the questions; no clinician alert), from the code's path:
# Bot API calls: the bot's "Analysing..." reply and questionnaire; the worker's getFile, download, result edit,
# chat action and picture upload. Audit writes: the bot's update record, job row, status message, enqueue mark
# and update done; the worker's running, done, combined and replied marks. Celery tasks: classify, finalize.
BOT_API_CALLS, AUDIT_WRITES, CELERY_TASKS = 7, 9, 2


def per_call_ms(
    calls: int, work: Callable[[int], object], others: dict[str, int], settle: Callable[[], object] = lambda: None
) -> dict[str, float]:
    """CPU milliseconds per call of ``work(n)``: this process's, and each of ``others`` (pids, with children),
    read once ``settle`` returns (the servers have done what the calls asked)."""
    before = {name: stack_cpu_seconds([pid]) for name, pid in others.items()}
    started = time.process_time()
    for n in range(calls):
        work(n)
    spent = {"client": time.process_time() - started}
    settle()
    spent.update({name: stack_cpu_seconds([pid]) - before[name] for name, pid in others.items()})
    return {name: 1000 * seconds / calls for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="repetitions of each part")
    args = parser.parse_args()
    one_blas_thread_per_process()  # the model and the picture run as in the workers (skinsense/worker_process.py)
    redis_port, sandbox_port = free_port(), free_port()
    database_url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='skinsense-floor-')) / 'audit.sqlite3'}"
    # This process plays the bot and the workers: the same settings as the servers it starts (Stack copies them).
    os.environ.update(
        SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN,
        SKINSENSE_TELEGRAM_API_URL=f"http://127.0.0.1:{sandbox_port}",
        SKINSENSE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SKINSENSE_DATABASE_URL=database_url,
        SKINSENSE_LOG_LEVEL="WARNING",
        SKINSENSE_TELEGRAM_MESSAGES_PER_S="1000",
    )
    get_settings.cache_clear()
    settings = get_settings()
    if settings.data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR")
    photos = [p.read_bytes() for p in sorted((settings.data_dir / "images").glob("*.jpg"))[:64]]
    upgrade_database(database_url)
    stack = Stack()
    figures: dict[str, dict[str, float]] = {}
    try:
        stack.start("redis", ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"])
        stack.start("sandbox", [sys.executable, "-m", "skinsense.cli", "sandbox", "--port", str(sandbox_port)])
        wait_for_port(redis_port)
        wait_for_port(sandbox_port)
        servers = {name: process.pid for name, process in stack.processes}

        from worker.telegram import TelegramClient

        telegram = TelegramClient.open(settings)
        telegram.send_text(1, "warm-up")
        # A chat each: Telegram's one message a second per chat would make the calls wait, not work.
        figures["Bot API call (sendMessage)"] = per_call_ms(
            args.calls, lambda n: telegram.send_text(1000 + n, "x"), servers
        )
        telegram.close()

        jobs = JobStore(build_engine(database_url))
        job = jobs.record_received(
            chat_ref="f" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=Delivery(chat_id=1, file_id="f")
        )
        figures["audit write (one job change)"] = per_call_ms(
            args.calls, lambda n: jobs.set_status_message(job.id, n), {}
        )

        stack.start("worker", [*worker_command(settings, concurrency=1)[:-2], "--loglevel", "WARNING"])
        time.sleep(15)  # the worker loads its model
        worker = {"worker": next(process.pid for name, process in stack.processes if name == "worker")}
        app = producer_app()
        broker = app.connection_for_write().default_channel.client
        enqueue_classification(ClassifyPhotoRequest(job_id=uuid.uuid4()), app)

        def drained() -> None:
            while broker.llen("classify"):
                time.sleep(0.05)
            time.sleep(1.0)  # the last task runs

        drained()
        # Jobs the audit database does not know: each task looks its job up and drops it.
        figures["Celery task (with its job lookup)"] = per_call_ms(
            args.calls,
            lambda n: enqueue_classification(ClassifyPhotoRequest(job_id=uuid.uuid4()), app),
            {**worker, **servers},
            settle=drained,
        )

        from models.serving.explain import explanation_picture
        from models.serving.inference import Classifier
        from models.serving.screening import screen_photo
        from shared.images import UnreadableImage

        classifier = Classifier(runtime=settings.model_runtime, threads=1)
        analysed: list[tuple[bytes, Prediction]] = []
        for photo in photos:
            with contextlib.suppress(UnreadableImage):  # refused by a gate: not drawn
                analysed.append((photo, screen_photo(photo, classifier)))

        def one_screening(n: int) -> None:
            with contextlib.suppress(UnreadableImage):
                screen_photo(photos[n % len(photos)], classifier)

        figures["bare decode+gates+model"] = per_call_ms(args.calls, one_screening, {})

        def one_picture(n: int) -> None:
            photo, prediction = analysed[n % len(analysed)]
            ranking = prediction.to_dict()["ranking"]
            explanation_picture(photo, classifier, ranking, prediction.photo_kind, prediction.feature_map)

        figures["explanation picture"] = per_call_ms(args.calls, one_picture, {})
    finally:
        stack.stop()

    print(f"CPU ms per call ({args.calls} calls each; client = this process):")
    totals = {name: sum(parts.values()) for name, parts in figures.items()}
    for name, parts in figures.items():
        shown = ", ".join(f"{side} {ms:.2f}" for side, ms in parts.items())
        print(f"  {name:<36} {totals[name]:6.2f}  ({shown})")
    bare = totals["bare decode+gates+model"]
    floor = (
        bare
        + totals["explanation picture"]
        + BOT_API_CALLS * totals["Bot API call (sendMessage)"]
        + AUDIT_WRITES * totals["audit write (one job change)"]
        + CELERY_TASKS * totals["Celery task (with its job lookup)"]
    )
    print(
        f"floor per photo: bare {bare:.1f} + picture {totals['explanation picture']:.1f} + {BOT_API_CALLS} Bot API "
        f"calls + {AUDIT_WRITES} audit writes + {CELERY_TASKS} Celery tasks = {floor:.1f} ms of CPU"
    )
    print(f"ceiling on the pipeline's throughput against the bare model on the same cores: {bare / floor:.2f}")


if __name__ == "__main__":
    main()
