"""``skinsense up``: the whole stack in the foreground (the audit database migrated first, Redis if none
answers, sandbox when there is no token, worker, beat, bot, Flower). Ctrl-C stops everything cleanly."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import Settings, get_settings
from shared.queue import WORKER_QUEUES
from skinsense.migrate import upgrade_database
from skinsense.processes import port_open, stop_process_group
from skinsense.processes import wait_for_port as wait_for_port  # re-exported: benchmarks/pipeline.py uses it
from skinsense.sandbox import SANDBOX_TOKEN

log = logging.getLogger(__name__)


def worker_command(
    settings: Settings, pool: str = "prefork", concurrency: int | None = None, hostname: str | None = None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "skinsense.worker_process",  # celery, with PROMETHEUS_MULTIPROC_DIR set for the prefork children
        "-A",
        "worker.celery_app",
        "worker",
        "-E",
        "-Q",
        ",".join(WORKER_QUEUES),
        "--pool",
        pool,
        "--concurrency",
        str(concurrency or settings.worker_concurrency),
        "--loglevel",
        "INFO",
    ]
    if hostname:
        command += ["--hostname", hostname]
    return command


def beat_command(schedule_file: Path = Path("var/celerybeat-schedule")) -> list[str]:
    """Celery beat: queues the periodic tasks of worker/celery_app.py (the daily retention purge). One per
    deployment; ``schedule_file``: where it remembers the last runs."""
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "-s", str(schedule_file)]


def flower_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "skinsense.flower_server",  # celery's own `flower`, with /metrics behind the basic auth
        "-A",
        "worker.celery_app",
        "flower",
        f"--address={settings.flower_address}",
        f"--port={settings.flower_port}",
    ]


def flower_environment(settings: Settings) -> dict[str, str]:
    # Basic auth through the environment, not the command line, which other users can read.
    return {"FLOWER_BASIC_AUTH": f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"}


class Stack:
    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.environment = dict(os.environ)

    def start(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log.info("starting %s", name)
        process = subprocess.Popen(command, env={**self.environment, **(extra_env or {})}, start_new_session=True)
        self.processes.append((name, process))

    def stop(self) -> None:
        """Stop in reverse start order, each before the next, so the bot never outlives its Bot API."""
        for name, process in reversed(self.processes):
            if process.poll() is not None:
                continue
            log.info("stopping %s", name)
            stop_process_group(process)

    def watch(self) -> int:
        while True:
            for name, process in self.processes:
                code = process.poll()
                if code is not None:
                    log.error("%s exited with code %s; stopping the stack", name, code)
                    return 1
            time.sleep(0.5)


def ensure_redis(stack: Stack, settings: Settings) -> None:
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if port_open(port, host):
        return
    if host not in ("127.0.0.1", "localhost") or shutil.which("redis-server") is None:
        raise SystemExit(
            f"Redis does not answer at {host}:{port} and redis-server is not installed here; "
            "install it (apt-get install redis-server) or set SKINSENSE_REDIS_URL"
        )
    data_dir = Path("var/redis")
    data_dir.mkdir(parents=True, exist_ok=True)
    stack.start(
        "redis",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
    )
    if not wait_for_port(port, host):
        raise SystemExit("redis-server did not start")


SANDBOX_HOWTO = """
No SKINSENSE_TELEGRAM_TOKEN is set: the bot talks to the local Bot API sandbox at {api}.
Play a patient (chat id 1001) from another terminal:
  curl -s -X POST --data-binary @photo.jpg {api}/sandbox/chats/1001/photo
  curl -s -X POST -H 'Content-Type: application/json' -d '{{"text": "/start"}}' {api}/sandbox/chats/1001/text
  curl -s {api}/sandbox/chats/1001/messages          # what the bot answered
Flower (ops): http://127.0.0.1:{flower_port}  (user {flower_user}, password from SKINSENSE_FLOWER_PASSWORD)
"""


def run_up() -> int:
    settings = get_settings()
    stack = Stack()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        upgrade_database(settings.database_url)  # before any process touches the audit database
        ensure_redis(stack, settings)
        if settings.telegram_token is None:
            api = f"http://127.0.0.1:{settings.sandbox_port}"
            stack.start("sandbox", [sys.executable, "-m", "skinsense.cli", "sandbox"])
            if not wait_for_port(settings.sandbox_port):
                raise SystemExit("the sandbox did not start")
            stack.environment.update(SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN, SKINSENSE_TELEGRAM_API_URL=api)
            print(
                SANDBOX_HOWTO.format(api=api, flower_port=settings.flower_port, flower_user=settings.flower_user),
                flush=True,
            )
        stack.start("worker", worker_command(settings))
        stack.start("beat", beat_command())
        stack.start("bot", [sys.executable, "-m", "skinsense.cli", "bot"])
        stack.start("flower", flower_command(settings), flower_environment(settings))
        return stack.watch()
    except KeyboardInterrupt:
        log.info("Ctrl-C: stopping")
        return 0
    finally:
        # A second Ctrl-C or SIGTERM must not cut the stop short: it would leave the children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
