"""Chaos benchmark: the real stack on free ports, photos from distinct chats, one fault injected mid-load per run.

Prints a table, asserts nothing; never run by CI (tests/e2e/test_chaos.py runs a bounded subset with assertions).
Each fault gets a fresh stack (`benchmarks/pipeline.py`'s start_stack: redis-server with its append-only file,
the sandbox with its fault controls, a prefork worker, beat (the reconciler), the bot; supervised by
skinsense.stack.Stack exactly as `skinsense up` does, so a killed process comes back), SQLite unless the fault
needs PostgreSQL (or --postgres).
Patients have agreed to the privacy text before (their consent rows), and never answer the questionnaire.
The two-host faults (leader_bot_killed, worker_host_lost, clock_skew_3s) run a second application host beside
the first: its own bot replica and worker in their own process groups, sharing only Redis, PostgreSQL and the
sandbox; the leader lease is 5 s there. clock_skew_3s needs a C compiler (tests/auxil/skewed_clock.c).

Per fault: sent, answered (the patient's "Analysing..." became a final answer: result, refusal or apology),
lost, duplicate patient replies (final answers beyond the first, per photo), duplicate clinician alerts (per
job and clinician; and how many of them say they may be a repeat), audit rows in a wrong final state (not one
row per photo, still queued or running, no reply recorded, or a high-risk result with no clinician alert or
one given up), clinician chats that alerts had still to reach when the wait for them ended (durably queued in
the outbox, going out at Telegram's pace of about a message a second per clinician chat: an alert is an album
and a text), and the time from the fault's end until every photo was answered.

    python benchmarks/chaos.py --photos 400                  # every fault
    python benchmarks/chaos.py --photos 100 --faults bot_killed,redis_restarted
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect, text

from shared.audit import chat_reference
from shared.config import Settings
from shared.db import build_engine
from shared.texts import clinician as clinician_texts
from shared.texts import patient as patient_texts
from skinsense.migrate import upgrade_database
from skinsense.processes import stop_process_group
from skinsense.sandbox import SANDBOX_TOKEN, plain_text
from skinsense.stack import RestartPolicy, Stack, worker_command
from worker.clinician_alerts import MAX_DELIVERY_ATTEMPTS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.auxil, for PostgreSQL clusters
from pipeline import SandboxCalls, consent_all, free_port, start_stack

from tests.auxil.answers import final_answers, is_final_answer
from tests.auxil.services import PostgresCluster, postgres_cluster, skewed_clock_env

CLINICIANS = (9001, 9002)
MELANOMA = frozenset({"mel"})
CHAT_HASH_KEY = "chaos-benchmark-chat-hash-key"
FIRST_CHAT = 700_000


# --- what the patients and clinicians saw ---------------------------------------------------------------------


REPEAT_MARK = plain_text(clinician_texts.POSSIBLY_REPEATED, "HTML")
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Outcome:
    sent: int = 0
    answered: int = 0
    duplicate_replies: int = 0
    duplicate_alerts: int = 0
    marked_repeats: int = 0
    wrong_rows: int = 0
    wrong_examples: list[str] = field(default_factory=list)
    alerts_queued: int = 0  # clinician chats a high-risk result's alert had still to reach when the wait ended
    drain_s: float | None = None  # None: not every photo was answered before the deadline

    @property
    def lost(self) -> int:
        return self.sent - self.answered


class FinalAnswers:
    """The chats whose photo got a final answer, from the sandbox's call log as it grows: a send or edit of a
    final text that was executed (a dropped response was executed; a 429 or 5xx was not)."""

    def __init__(self, calls: SandboxCalls, photos: dict[int, int]) -> None:
        self.calls, self.photos, self._seen, self._chats = calls, photos, 0, set[int]()

    def chats(self) -> set[int]:
        calls = self.calls.read()
        for call in calls[self._seen :]:
            if call["method"] not in ("editMessageText", "sendMessage") or call.get("fault") in ("429", "5xx"):
                continue
            parameters = call["parameters"]
            chat = str(parameters.get("chat_id", ""))
            if not chat.isdigit() or int(chat) not in self.photos:
                continue
            if is_final_answer(plain_text(str(parameters.get("text", "")), str(parameters.get("parse_mode", "")))):
                self._chats.add(int(chat))
        self._seen = len(calls)
        return set(self._chats)


def clinician_alerts(http: httpx.Client) -> tuple[int, int]:
    """(duplicate alerts, of which said they may be a repeat): per clinician chat, job and kind of message (the
    photo and the text with the buttons are one alert), every message beyond the first."""
    duplicates = marked = 0
    for clinician in CLINICIANS:
        per_job: dict[tuple[str, bool], list[str]] = {}
        for message in http.get(f"/sandbox/chats/{clinician}/messages").json():
            if not message["from_bot"]:
                continue
            body = str(message.get("text") or message.get("caption") or "")
            job_ids = JOB_ID.findall(body)
            if job_ids:  # the alert's own job comes first (later ones list the patient's other photos)
                per_job.setdefault((job_ids[0], "photo" in message), []).append(body)
        for bodies in per_job.values():
            duplicates += len(bodies) - 1
            marked += sum(1 for body in bodies[1:] if REPEAT_MARK in body)
    return duplicates, marked


@dataclass(frozen=True)
class AuditCheck:
    wrong: list[str]  # why each wrong photo's rows are wrong, one line each
    # Clinician chats still to reach, summed over the high-risk results whose alert is in the outbox, being sent
    # (none given up): each clinician chat takes an alert every two seconds at most (its album and its text).
    alerts_queued: int


def check_audit_rows(database_url: str, chats: list[int]) -> AuditCheck:
    """Each photo's audit rows: wrong (not one job row, still queued or running, no reply recorded, a high-risk
    result with no clinician alert or one given up in a chat), or right; and, summed over the right ones that are
    high-risk results, the clinician chats their alert has still to reach (its outbox row written: clinician chats
    take about a message a second each, so a burst of alerts reaches them well after the patients)."""
    references = {chat_reference(chat, CHAT_HASH_KEY): chat for chat in chats}
    rows_by_chat: dict[int, list[dict[str, Any]]] = {chat: [] for chat in chats}
    alerts: dict[str, dict[str, Any]] = {}
    engine = build_engine(database_url)
    try:
        with engine.connect() as connection:
            for found in connection.execute(text("SELECT * FROM jobs")).mappings():
                if found["chat_ref"] in references:
                    rows_by_chat[references[found["chat_ref"]]].append(dict(found))
            if inspect(connection).has_table("clinician_alerts"):
                given_up, reached = set[str](), Counter[str]()
                for delivery in connection.execute(
                    text("SELECT alert_id, message_id, attempts FROM clinician_alert_deliveries")
                ):
                    alert_id = str(delivery.alert_id).replace("-", "")
                    if delivery.message_id is not None:
                        reached[alert_id] += 1
                    elif delivery.attempts >= MAX_DELIVERY_ATTEMPTS:
                        given_up.add(alert_id)
                for sent in connection.execute(text("SELECT id, job_id, forwarded, sent_at FROM clinician_alerts")):
                    alert_id = str(sent.id).replace("-", "")
                    alerts[str(sent.job_id).replace("-", "")] = {
                        "forwarded": sent.forwarded,
                        "sent": sent.sent_at,
                        "given_up": alert_id in given_up,
                        "chats_left": max(0, len(CLINICIANS) - reached[alert_id]),
                    }
    finally:
        engine.dispose()
    problems, alerts_queued = [], 0
    for chat, rows in rows_by_chat.items():
        if len(rows) != 1:
            problems.append(f"chat {chat}: {len(rows)} job rows for one photo")
            continue
        row = rows[0]
        job = str(row["id"]).replace("-", "")
        status, risk = str(row["status"]).lower(), str(row.get("risk") or "").lower()
        if status in ("queued", "running"):
            problems.append(f"job {job}: still {status}")
        elif row.get("replied_at") is None:
            problems.append(f"job {job}: {status}, but no reply recorded")
        elif status == "done" and risk == "high" and not row.get("same_photo_as"):
            alert = alerts.get(job)
            if alert is None:
                problems.append(f"job {job}: high risk, no clinician alert")
            elif alert["forwarded"] and alert["sent"] is None and alert["given_up"]:
                problems.append(f"job {job}: high risk, its clinician alert given up in a clinician chat")
            elif alert["forwarded"] and alert["sent"] is None:
                alerts_queued += alert["chats_left"]
    return AuditCheck(problems, alerts_queued)


# --- the stack under test --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondHost:
    """A second application host: its own bot replica (a standby at first) and worker, in their own process
    groups, sharing only Redis, PostgreSQL and the sandbox with the first; ``clock_offset_s``: its wall clock
    that far off the first host's (tests/auxil/skewed_clock.c)."""

    clock_offset_s: float = 0.0


SECOND_HOST_SERVICES = ("bot-b", "worker-b")
LEASE_S = 5.0  # the leader lease (and update claims) with two hosts: a killed leader is replaced within it


class ChaosStack:
    """One supervised stack (as under `skinsense up`) and the handles the faults need; with ``second_host``, the
    first host's bot is replica "a" and the second host's processes run beside it (services "bot-b", "worker-b")."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        concurrency: int,
        postgres: PostgresCluster | None,
        second_host: SecondHost | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir, self.database_url, self.postgres = workdir, database_url, postgres
        self.second_host = second_host
        self.redis_port, self.sandbox_port = free_port(), free_port()
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        self.stack = Stack(RestartPolicy(first_delay_s=1.0, max_delay_s=5.0, give_up_exits=0), log_dir=workdir)
        for name in [n for n in self.stack.environment if n.startswith("SKINSENSE_") and n != "SKINSENSE_DATA_DIR"]:
            del self.stack.environment[name]  # the stack's settings are these alone, whoever runs it
        self.stack.environment.update(
            SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN,
            SKINSENSE_TELEGRAM_API_URL=f"http://127.0.0.1:{self.sandbox_port}",
            SKINSENSE_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            SKINSENSE_DATABASE_URL=database_url,
            SKINSENSE_CHAT_HASH_KEY=CHAT_HASH_KEY,
            SKINSENSE_CLINICIAN_CHAT_IDS=",".join(map(str, CLINICIANS)),
            SKINSENSE_LOG_LEVEL="INFO",
            SKINSENSE_QUESTIONNAIRE_TIMEOUT_S="0",  # patients who never answer: the result goes out when ready
            SKINSENSE_PHOTOS_PER_CHAT_PER_HOUR="0",
            SKINSENSE_WORKER_METRICS_PORT=str(free_port()),
            SKINSENSE_BOT_METRICS_PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(Path(__file__).resolve().parents[1]),  # this checkout's code, not the installed one's
        )
        self.stack.environment.update(settings or {})
        if second_host is not None:
            self.stack.environment.update(SKINSENSE_BOT_REPLICA_ID="a", SKINSENSE_BOT_LEADER_LEASE_S=str(LEASE_S))
        self.concurrency = concurrency
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.http: httpx.Client | None = None
        self._calls: SandboxCalls | None = None

    def __enter__(self) -> ChaosStack:
        try:
            self.http = start_stack(
                self.stack,
                self.redis_port,
                self.sandbox_port,
                self.concurrency,
                redis_dir=self.workdir / "redis",
                # As under `skinsense up`: the beat queues the reconciler, which recovers a job whose message was
                # lost with a killed worker (worker/reconciler.py). One beat only: start_stack starts it.
                beat_schedule=self.workdir / "celerybeat-schedule",
            )
            wait_ready(int(self.stack.environment["SKINSENSE_WORKER_METRICS_PORT"]))
            if self.second_host is not None:
                self._start_second_host(self.second_host)
        except BaseException:
            self.stack.stop()
            raise
        self._watcher = threading.Thread(target=self.stack.watch, args=(self._stopping, 0.2), daemon=True)
        self._watcher.start()
        return self

    def _start_second_host(self, host: SecondHost) -> None:
        folder = self.workdir / "host-b"
        folder.mkdir(exist_ok=True)
        worker_port = free_port()
        env = {
            "SKINSENSE_BOT_REPLICA_ID": "b",
            "SKINSENSE_WORKER_METRICS_PORT": str(worker_port),
            "SKINSENSE_BOT_METRICS_PORT": str(free_port()),
            "TMPDIR": str(folder),  # its own working folder
        }
        if host.clock_offset_s:
            env.update(skewed_clock_env(host.clock_offset_s))
        command = worker_command(Settings(), concurrency=self.concurrency)  # ends "--loglevel INFO"
        self.stack.start("worker-b", [*command[:-2], "--loglevel", "WARNING", "--hostname", "chaos-b@%h"], env)
        self.stack.start("bot-b", [sys.executable, "-m", "skinsense.cli", "bot"], env)
        wait_ready(worker_port)

    def leading_bot(self) -> str:
        """The bot service that holds the leader lease ("bot" or "bot-b")."""
        with contextlib.closing(build_engine(self.database_url).connect()) as connection:
            holder = connection.execute(text("SELECT holder FROM leases WHERE name = 'bot'")).scalar_one()
        return "bot" if holder == "a" else "bot-b"

    def lose(self, name: str, *, back_after_s: float = math.inf) -> None:
        """The service's whole process group killed (kill -9), and started again only ``back_after_s`` later
        (never, by default: its machine is gone)."""
        service = self.stack.service(name)
        service.restart_at = time.monotonic() + back_after_s  # first: the supervisor must not restart it at once
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGKILL)

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        self.stack.stop()

    @property
    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    @property
    def calls(self) -> SandboxCalls:
        """The sandbox's call log, read as it grows (one reader per stack)."""
        if self._calls is None:
            self._calls = SandboxCalls(str(self.api.base_url))
        return self._calls

    def pid(self, name: str) -> int:
        return int(self.stack.service(name).process.pid)

    def wait_restarted(self, name: str, restarts_before: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            service = self.stack.service(name)
            if service.restarts > restarts_before and service.process.poll() is None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not restarted within {timeout_s} s")

    def dump_worker_stacks(self) -> None:
        """Every worker process (main and pool children) prints its threads' stacks to the worker's log
        (worker/celery_app.py registers SIGUSR2 with faulthandler): what a stuck worker was doing."""
        main = self.stack.service("worker").process.pid
        children = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _parent_pid(stat) == main]
        for pid in [main, *children]:  # one at a time: they share the log
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
            time.sleep(0.5)

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for log_file in sorted(self.workdir.glob("*.log")):
            parts.append(f"----- {log_file.stem} -----\n{log_file.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)


def wait_ready(metrics_port: int, timeout_s: float = 120) -> None:
    """Until a worker reports ready (models loaded, broker and database answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{metrics_port}/health/ready", timeout=5).status_code == 200:
                return
        time.sleep(0.5)


def _parent_pid(stat_file: Path) -> int | None:
    try:
        # /proc/PID/stat: "pid (name) state ppid ...": the name may hold spaces, so split after its ")".
        return int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# --- faults: each runs at its moment in the burst and returns when the fault has ended ------------------------


def kill_and_await_restart(chaos: ChaosStack, name: str) -> None:
    restarts = chaos.stack.service(name).restarts
    os.kill(chaos.pid(name), signal.SIGKILL)
    chaos.wait_restarted(name, restarts)


def fault_bot_killed(chaos: ChaosStack) -> None:
    kill_and_await_restart(chaos, "bot")


def fault_worker_main_killed(chaos: ChaosStack) -> None:
    kill_and_await_restart(chaos, "worker")


def pool_children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry.name))
    return children


def fault_worker_child_killed(chaos: ChaosStack) -> None:
    children = pool_children(chaos.pid("worker"))
    if not children:
        raise RuntimeError("the worker has no pool processes")
    os.kill(children[0], signal.SIGKILL)  # Celery's pool replaces it; its task comes back (acks_late)


def fault_redis_restarted(chaos: ChaosStack) -> None:
    """A clean restart (SIGTERM: the append-only file is flushed); the supervisor starts it again."""
    restarts = chaos.stack.service("redis").restarts
    stop_process_group(chaos.stack.service("redis").process)
    chaos.wait_restarted("redis", restarts)


def fault_broker_down_5s(chaos: ChaosStack) -> None:
    """Redis away for 5 s while high-risk results are being finished (their clinician alerts queue)."""
    service = chaos.stack.service("redis")
    restarts = service.restarts
    stop_process_group(service.process)
    deadline = time.monotonic() + 10
    while service.restart_at is None and time.monotonic() < deadline:  # the supervisor saw it go
        time.sleep(0.02)
    service.restart_at = time.monotonic() + 5  # ...and brings it back in 5 s rather than 1
    chaos.wait_restarted("redis", restarts)


def rate_fault(method: str = "*", seconds: float = 20, **rates: float) -> Callable[[ChaosStack], None]:
    """Random 429/5xx/dropped responses on ``method`` (``*``: every Bot API method and the downloads) for a while."""

    def fault(chaos: ChaosStack) -> None:
        body = {"method": method, **rates, "retry_after": 1, "seed": 7}
        chaos.api.post("/sandbox/faults", json=body).raise_for_status()
        time.sleep(seconds)
        chaos.api.delete("/sandbox/faults").raise_for_status()

    return fault


def postgres_stopped(seconds: float) -> Callable[[ChaosStack], None]:
    def fault(chaos: ChaosStack) -> None:
        assert chaos.postgres is not None
        chaos.postgres.stop()
        time.sleep(seconds)
        chaos.postgres.start()

    return fault


def fault_leader_bot_killed(chaos: ChaosStack) -> None:
    """The leading bot replica killed (kill -9); its host's supervisor starts it again a minute later (a standby
    then): the other replica takes over the lease and the updates the dead one had claimed."""
    chaos.lose(chaos.leading_bot(), back_after_s=60)
    deadline = time.monotonic() + 60
    while chaos.leading_bot() == "bot" and time.monotonic() < deadline:
        time.sleep(0.2)


def fault_worker_host_lost(chaos: ChaosStack) -> None:
    """The second host gone (its worker with the jobs it held, and its bot replica): never back."""
    for name in SECOND_HOST_SERVICES:
        chaos.lose(name)


def fault_sqlite_locked_15s(chaos: ChaosStack) -> None:
    path = chaos.database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as connection:
        connection.execute("BEGIN EXCLUSIVE")  # in WAL mode: no other writer until we are done
        time.sleep(15)
        connection.execute("ROLLBACK")


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    inject: Callable[[ChaosStack], None]
    postgres: bool = False
    high_risk_photos: bool = False
    second_host: SecondHost | None = None  # two application hosts (PostgreSQL: nothing else is shared)


FAULTS: tuple[Fault, ...] = (
    Fault("bot_killed", "bot killed (kill -9) mid-burst, restarted", fault_bot_killed),
    Fault("api_storm", "Bot API 20% 429, 12% 5xx on every method for 20 s", rate_fault(rate_429=0.2, rate_5xx=0.12)),
    Fault("responses_lost", "15% of Bot API responses lost after execution, 20 s", rate_fault(rate_drop=0.15)),
    Fault("worker_child_killed", "a worker pool process killed (kill -9)", fault_worker_child_killed),
    Fault("worker_main_killed", "worker main process killed (kill -9), restarted", fault_worker_main_killed),
    Fault("redis_restarted", "Redis restarted (SIGTERM, started again)", fault_redis_restarted),
    Fault(
        "broker_down_alerts",
        "Redis down 5 s while high-risk results queue clinician alerts",
        fault_broker_down_5s,
        high_risk_photos=True,
    ),
    Fault("postgres_stopped", "PostgreSQL stopped 5 s", postgres_stopped(5), postgres=True),
    Fault("sqlite_locked", "SQLite write-locked 15 s", fault_sqlite_locked_15s),
    Fault("download_429", "30% 429 on the file download for 20 s", rate_fault(method="download", rate_429=0.3)),
    Fault(
        "leader_bot_killed",
        "two hosts; the leading bot killed (kill -9), the other host's takes over",
        fault_leader_bot_killed,
        postgres=True,
        second_host=SecondHost(),
    ),
    Fault(
        "worker_host_lost",
        "two hosts; the second (worker and standby bot) killed, never back",
        fault_worker_host_lost,
        postgres=True,
        second_host=SecondHost(),
    ),
    Fault(
        "clock_skew_3s",
        "two hosts, the second's clock 3 s fast; the first's leading bot killed, so the skewed host leads",
        fault_leader_bot_killed,
        postgres=True,
        second_host=SecondHost(clock_offset_s=3.0),
    ),
)


# --- one run ---------------------------------------------------------------------------------------------------


def wait_for_acknowledged(calls: SandboxCalls, chats: set[int], count: int, timeout_s: float) -> None:
    """Until the bot has sent "Analysing..." to ``count`` of ``chats`` (the moment a fault lands mid-burst)."""
    wanted = {str(chat) for chat in chats}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        acknowledged = {
            str(call["parameters"].get("chat_id"))
            for call in calls.read()
            if call["method"] == "sendMessage"
            and call["parameters"].get("text") == patient_texts.ANALYSING
            and call.get("fault") not in ("429", "5xx")
        }
        if len(acknowledged & wanted) >= count:
            return
        time.sleep(0.05)


def lesion_photos(data_dir: Path, count: int, diagnoses: frozenset[str] | None = None) -> list[bytes]:
    """``count`` HAM10000 photos in image id order (again from the first if there are fewer), of ``diagnoses``
    only if given (HAM10000's dx codes: "mel", "nv", ...)."""
    with (data_dir / "metadata.csv").open() as metadata:
        rows = [r for r in csv.DictReader(metadata) if diagnoses is None or r["dx"] in diagnoses]
    paths = [data_dir / "images" / f"{r['image_id']}.jpg" for r in sorted(rows, key=lambda r: r["image_id"])]
    paths = [p for p in paths if p.is_file()]
    return [paths[i % len(paths)].read_bytes() for i in range(count)]


@contextlib.contextmanager
def database_for(fault: Fault, workdir: Path, use_postgres: bool) -> Iterator[tuple[str, PostgresCluster | None]]:
    if fault.postgres or use_postgres:
        with postgres_cluster() as cluster:
            yield cluster.url, cluster
    else:
        yield f"sqlite:///{workdir / 'audit.sqlite3'}", None


ALERTS_DRAIN_S = 120.0  # after the patients: how long the audit rows may take to reach their final state
# ... or longer while they are still moving (a burst of high-risk results: each alert takes a few messages, at
# Telegram's one a second per clinician chat), until they stall this long or the last resort.
ALERTS_STALL_S = 30.0
ALERTS_DRAIN_MAX_S = 900.0


def run_fault(
    fault: Fault,
    photos: list[bytes],
    *,
    first_chat: int,
    concurrency: int = 2,
    drain_timeout_s: float = 180,
    use_postgres: bool = False,
    workdir: Path | None = None,
    rate_per_s: float | None = None,
    alerts_wait_max_s: float = ALERTS_DRAIN_MAX_S,
    settings: Mapping[str, str] | None = None,
) -> tuple[Outcome, str]:
    """Send ``photos`` (one per chat; at ``rate_per_s``, or as one burst), inject the fault mid-burst (once the bot
    has acknowledged a third of them with "Analysing..."), wait for every answer (at most ``drain_timeout_s``
    after the fault ended), then score. ``settings``: SKINSENSE_* values over the production defaults the
    benchmark measures (the tests shorten the reconciler's deadlines). Returns the outcome and the processes' logs."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"skinsense-chaos-{fault.name}-"))
    chats = list(range(first_chat, first_chat + len(photos)))
    with database_for(fault, workdir, use_postgres) as (database_url, cluster):
        upgrade_database(database_url)
        consent_all(database_url, range(chats[0], chats[-1] + 1), CHAT_HASH_KEY)
        with ChaosStack(workdir, database_url, concurrency, cluster, fault.second_host, settings) as chaos:
            sent: dict[int, int] = {}  # chat -> the photo's message id
            fault_ended = threading.Event()
            fault_error: list[BaseException] = []
            ended_at: list[float] = []

            def inject() -> None:
                try:
                    wait_for_acknowledged(chaos.calls, set(chats), len(chats) // 3, timeout_s=120)
                    fault.inject(chaos)
                except BaseException as error:  # reported with the result, never hidden
                    fault_error.append(error)
                finally:
                    ended_at.append(time.monotonic())
                    fault_ended.set()

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            started = time.monotonic()
            with httpx.Client(base_url=str(chaos.api.base_url), timeout=60) as sender:
                for index, (chat, photo) in enumerate(zip(chats, photos, strict=True)):
                    if rate_per_s:
                        delay = started + index / rate_per_s - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    sent[chat] = int(sender.post(f"/sandbox/chats/{chat}/photo", content=photo).json()["message_id"])
            fault_ended.wait()
            outcome = Outcome(sent=len(sent))
            deadline = ended_at[0] + drain_timeout_s
            final_answers_seen = FinalAnswers(chaos.calls, sent)
            answered = final_answers_seen.chats()
            while len(answered) < len(sent) and time.monotonic() < deadline:
                time.sleep(1)
                answered = final_answers_seen.chats()
            if len(answered) == len(sent):
                outcome.drain_s = max(0.0, time.monotonic() - ended_at[0])
            time.sleep(3)  # late duplicates, if any, have a moment to show
            outcome.answered = len(final_answers_seen.chats())
            for chat, photo_id in sent.items():
                answers = final_answers(chaos.api.get(f"/sandbox/chats/{chat}/messages").json(), photo_id)
                outcome.duplicate_replies += max(0, answers - 1)
            # Clinician alerts go out at Telegram's pace per chat (about one message a second: an alert is an album
            # and a text), so a burst of high-risk results reaches the clinicians well after the patients.
            audit = check_audit_rows(database_url, chats)
            alerts_deadline = time.monotonic() + ALERTS_DRAIN_S
            last_resort = time.monotonic() + alerts_wait_max_s
            while (audit.wrong or audit.alerts_queued) and time.monotonic() < min(alerts_deadline, last_resort):
                time.sleep(2)
                later = check_audit_rows(database_url, chats)
                if len(later.wrong) + later.alerts_queued < len(audit.wrong) + audit.alerts_queued:
                    alerts_deadline = max(alerts_deadline, time.monotonic() + ALERTS_STALL_S)  # still going out
                audit = later
            outcome.duplicate_alerts, outcome.marked_repeats = clinician_alerts(chaos.api)
            outcome.wrong_rows, outcome.wrong_examples = len(audit.wrong), audit.wrong[:5]
            outcome.alerts_queued = audit.alerts_queued
            if fault_error:
                outcome.wrong_examples.insert(0, f"the fault itself failed: {fault_error[0]!r}")
            if outcome.lost:
                chaos.dump_worker_stacks()
                return outcome, chaos.logs(tail=30_000)
            return outcome, chaos.logs()


def print_table(results: list[tuple[Fault, Outcome]]) -> None:
    header = (
        f"{'fault':<21} {'sent':>5} {'answered':>8} {'lost':>5} {'dup replies':>11} "
        f"{'dup alerts (marked)':>19} {'wrong rows':>10} {'alert chats left':>16} {'drain s':>8}"
    )
    print(header)
    for fault, outcome in results:
        drain = f"{outcome.drain_s:.1f}" if outcome.drain_s is not None else "never"
        alerts = f"{outcome.duplicate_alerts} ({outcome.marked_repeats})"
        print(
            f"{fault.name:<21} {outcome.sent:>5} {outcome.answered:>8} {outcome.lost:>5} "
            f"{outcome.duplicate_replies:>11} {alerts:>19} {outcome.wrong_rows:>10} "
            f"{outcome.alerts_queued:>16} {drain:>8}"
        )
    for fault, outcome in results:
        for example in outcome.wrong_examples:
            print(f"  {fault.name}: {example}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=400, help="photos per fault, each from its own chat")
    parser.add_argument("--faults", default=",".join(f.name for f in FAULTS), help="comma-separated fault names")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--rate", type=float, default=None, help="photos sent per second (default: one burst)")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds to wait after the fault ended")
    parser.add_argument("--postgres", action="store_true", help="every fault on PostgreSQL (default: SQLite)")
    parser.add_argument(
        "--alerts-wait",
        type=float,
        default=ALERTS_DRAIN_MAX_S,
        help="at most this many seconds after the patients for the clinician alerts (a second per message per chat)",
    )
    args = parser.parse_args()
    data_dir = Settings().data_dir
    if data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR")
    by_name = {fault.name: fault for fault in FAULTS}
    wanted = [by_name[name] for name in args.faults.split(",") if name]
    results: list[tuple[Fault, Outcome]] = []
    first_chat = FIRST_CHAT + uuid.uuid4().int % 1000 * 10_000
    for fault in wanted:
        photos = lesion_photos(data_dir, args.photos, MELANOMA if fault.high_risk_photos else None)
        print(f"{fault.name}: {fault.description} ...", file=sys.stderr, flush=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"skinsense-chaos-{fault.name}-"))
        outcome, _ = run_fault(
            fault,
            photos,
            first_chat=first_chat,
            concurrency=args.concurrency,
            drain_timeout_s=args.drain_timeout,
            use_postgres=args.postgres,
            workdir=workdir,
            rate_per_s=args.rate,
            alerts_wait_max_s=args.alerts_wait,
        )
        print(f"  logs in {workdir}; {outcome}", file=sys.stderr, flush=True)
        results.append((fault, outcome))
        first_chat += args.photos
    pace = f"at {args.rate:g}/s" if args.rate else "as one burst"
    print(f"photos per fault: {args.photos}, sent {pace}, the fault once a third were acknowledged; ", end="")
    print(f"worker processes: {args.concurrency}")
    print_table(results)
    counts = Counter("ok" if o.lost == o.duplicate_replies == o.wrong_rows == 0 else "not ok" for _, o in results)
    print(f"faults with 0 lost, 0 duplicate replies, 0 wrong rows: {counts['ok']} of {len(results)}")


if __name__ == "__main__":
    main()
