"""``skinsense up``: the whole stack in the foreground (the audit database migrated first, Redis if none
answers, sandbox when there is no token, worker, beat, bot, Flower). A process that exits is restarted with
backoff (``Stack.watch``); Ctrl-C or SIGTERM stops everything cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RestartPolicy:
    """How ``skinsense up`` restarts a process that exited: after ``first_delay_s``, doubling per quick exit up
    to ``max_delay_s``; a process that ran ``stable_after_s`` is well again (the delay starts over). After
    ``crash_loop_exits`` quick exits in a row it is reported as crash-looping; after ``give_up_exits`` (0:
    never) the stack stops, since a restart loop that cannot succeed only hides the failure."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    crash_loop_exits: int = 5
    give_up_exits: int = 10

    def delay_s(self, quick_exits: int) -> float:
        return float(min(self.first_delay_s * 2 ** max(quick_exits - 1, 0), self.max_delay_s))


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL`` (Popen's negative return code)."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
        return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Supervised:
    """One process of the stack and what its supervisor knows about it."""

    name: str
    command: list[str]
    extra_env: dict[str, str]
    process: subprocess.Popen[bytes]
    started_at: float
    quick_exits: int = 0  # exits in a row, each before the process ran ``stable_after_s``
    restarts: int = 0
    restart_at: float | None = None  # when the exited process is due to start again


class Stack:
    """The stack's processes, each in its own process group, restarted by ``watch`` when one exits."""

    def __init__(self, policy: RestartPolicy | None = None, log_dir: Path | None = None) -> None:
        self.services: list[Supervised] = []
        self.log_dir = log_dir  # None: the processes write to our own output; else one NAME.log each
        self.environment = dict(os.environ)
        self.policy = policy or RestartPolicy()
        self.adopted_redis: tuple[str, int] | None = None  # a Redis that answered before we started: watched
        self._redis_gone_since: float | None = None

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """The current process of each service (a restarted one's new process)."""
        return [(service.name, service.process) for service in self.services]

    def start(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log.info("starting %s", name)
        process = self._spawn(name, command, extra_env)
        self.services.append(Supervised(name, command, dict(extra_env or {}), process, time.monotonic()))

    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        env = {**self.environment, **(extra_env or {})}
        if self.log_dir is None:
            return subprocess.Popen(command, env=env, start_new_session=True)
        with (self.log_dir / f"{name}.log").open("ab") as log_file:  # appended to across restarts
            return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def service(self, name: str) -> Supervised:
        return next(service for service in self.services if service.name == name)

    def stop(self) -> None:
        """Stop in reverse start order, each before the next, so the bot never outlives its Bot API; Redis last
        (even one started late, replacing an adopted Redis), so the workers' stop can still return their tasks."""
        ordered = sorted(reversed(self.services), key=lambda service: service.name == "redis")
        for service in ordered:
            service.restart_at = None
            if service.process.poll() is not None:
                continue
            log.info("stopping %s", service.name)
            stop_process_group(service.process)

    def watch(self, stopping: threading.Event | None = None, interval_s: float = 0.5) -> int:
        """Supervise until ``stopping`` is set (0) or a process keeps crashing past the policy's bound (1)."""
        while stopping is None or not stopping.is_set():
            if not self.supervise_once():
                return 1
            if stopping is None:
                time.sleep(interval_s)
            else:
                stopping.wait(interval_s)
        return 0

    def supervise_once(self) -> bool:
        """One round: note exits, restart what is due, watch an adopted Redis. False: give up, stop the stack."""
        now = time.monotonic()
        for service in self.services:
            code = service.process.poll()
            if code is None:
                continue
            if service.restart_at is None:
                if not self._note_exit(service, code, now):
                    return False
            elif now >= service.restart_at:
                self._restart(service)
        self._watch_adopted_redis(now)
        return True

    def _note_exit(self, service: Supervised, code: int, now: float) -> bool:
        ran_s = now - service.started_at
        service.quick_exits = 1 if ran_s >= self.policy.stable_after_s else service.quick_exits + 1
        # A killed leader can leave its own children (a worker's pool) behind in its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.process.pid, signal.SIGKILL)
        if self.policy.give_up_exits and service.quick_exits >= self.policy.give_up_exits:
            log.critical(
                "%s exited (%s) %d times in a row, each within %.0f s of starting: giving up, stopping the stack",
                service.name,
                describe_exit(code),
                service.quick_exits,
                self.policy.stable_after_s,
            )
            return False
        delay_s = self.policy.delay_s(service.quick_exits)
        service.restart_at = now + delay_s
        log.error(
            "%s exited (%s) after %.1f s; restarting it in %.0f s (restart %d)",
            service.name,
            describe_exit(code),
            ran_s,
            delay_s,
            service.restarts + 1,
        )
        if service.quick_exits >= self.policy.crash_loop_exits:
            log.critical(
                "%s is crash-looping: %d exits in a row, each within %.0f s of starting; look at its log above",
                service.name,
                service.quick_exits,
                self.policy.stable_after_s,
            )
        return True

    def _restart(self, service: Supervised) -> None:
        service.restarts += 1
        service.restart_at = None
        log.warning("restarting %s (restart %d)", service.name, service.restarts)
        service.process = self._spawn(service.name, service.command, service.extra_env)
        service.started_at = time.monotonic()

    def _watch_adopted_redis(self, now: float) -> None:
        """An adopted Redis (say, another ``up``'s, stopping with it) that stops answering is replaced by our own,
        so the workers reconnect to a Redis that stays."""
        if self.adopted_redis is None:
            return
        host, port = self.adopted_redis
        if port_open(port, host):
            self._redis_gone_since = None
            return
        if self._redis_gone_since is None:
            self._redis_gone_since = now
            log.warning("the Redis at %s:%d that was running before this stack started stopped answering", host, port)
        elif now - self._redis_gone_since >= 2.0 and can_start_redis(host):
            log.warning("starting our own redis-server on %s:%d instead", host, port)
            self.adopted_redis = None
            start_redis(self, port)


REDIS_DATA_DIR = Path("var/redis")


def redis_command(port: int, data_dir: Path = REDIS_DATA_DIR) -> list[str]:
    """redis-server with an append-only file fsynced every second: a restart loses at most a second of queue."""
    return [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
    ]


def can_start_redis(host: str) -> bool:
    return host in ("127.0.0.1", "localhost") and shutil.which("redis-server") is not None


def start_redis(stack: Stack, port: int) -> None:
    REDIS_DATA_DIR.mkdir(parents=True, exist_ok=True)
    stack.start("redis", redis_command(port))
    if not wait_for_port(port):
        raise SystemExit("redis-server did not start")


def redis_persistence_warning(redis_url: str) -> str | None:
    """Why queued photos would be lost when the Redis at ``redis_url`` restarts, or None when it keeps an
    append-only file (or cannot say: a managed Redis may refuse CONFIG)."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
        with client:
            config = client.config_get("appendonly")
            if str(config.get("appendonly", "")).lower() == "yes":
                return None
            snapshots = str(client.config_get("save").get("save", "")).strip()
    except redis.RedisError as error:
        log.info("could not read the Redis persistence settings (%s)", type(error).__name__)
        return None
    if snapshots:
        return (
            "the Redis already running has no append-only file (appendonly no; snapshots only): "
            "photos queued since its last snapshot would be lost when it restarts; "
            "start it with --appendonly yes"
        )
    return (
        "the Redis already running keeps nothing on disk (appendonly no, no snapshots): every queued photo "
        "would be lost when it restarts; start it with --appendonly yes --appendfsync everysec"
    )


def ensure_redis(stack: Stack, settings: Settings) -> None:
    """Use the Redis that answers at the URL (warning when it would lose the queues on a restart, and watched:
    if it goes away, ours replaces it), or start our own redis-server with an append-only file."""
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if port_open(port, host):
        log.info("using the Redis already running at %s:%d", host, port)
        warning = redis_persistence_warning(settings.redis_url)
        if warning:
            log.warning(warning)
        stack.adopted_redis = (host, port)
        return
    if not can_start_redis(host):
        raise SystemExit(
            f"Redis does not answer at {host}:{port} and redis-server is not installed here; "
            "install it (apt-get install redis-server) or set SKINSENSE_REDIS_URL"
        )
    start_redis(stack, port)


SANDBOX_HOWTO = """
No SKINSENSE_TELEGRAM_TOKEN is set: the bot talks to the local Bot API sandbox at {api}.
Web chat (play patients and clinicians in a browser): open {api}/
Or play a patient (chat id 1001) from another terminal:
  curl -s -X POST --data-binary @photo.jpg {api}/sandbox/chats/1001/photo
  curl -s -X POST -H 'Content-Type: application/json' -d '{{"text": "/start"}}' {api}/sandbox/chats/1001/text
  curl -s {api}/sandbox/chats/1001/messages          # what the bot answered
Flower (ops): http://127.0.0.1:{flower_port}  (user {flower_user}, password from SKINSENSE_FLOWER_PASSWORD)
"""


def run_up() -> int:
    settings = get_settings()
    stack = Stack()

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        # The first Ctrl-C or SIGTERM stops the stack; a second one, even before the handlers below are set to
        # ignore it, must not interrupt the stop (it left the children running).
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
