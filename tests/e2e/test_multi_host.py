"""Past one machine, on the real stack: two hosts, each with a bot replica and a Celery worker (separate process
groups and working folders; nothing shared but Redis, PostgreSQL and Telegram, here the sandbox), and beat on
a third. Mid-burst of 200 photos the leading bot is killed (kill -9), then the rest of its host (its worker,
with the jobs it held), while patients answer the questionnaire, agree to the privacy text for a photo they
sent before, or say "No thanks". Every photo is answered exactly once, every answer given is in its result,
no questionnaire is closed by the failover, and nothing is stored for a patient after "No thanks"."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from bot.patients import PatientStore
from shared.answers import PatientAnswers
from shared.audit import HeldPhoto, Job, PatientProfile, chat_reference
from shared.config import Settings
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from skinsense.sandbox import plain_text
from skinsense.stack import beat_command, worker_command
from tests.auxil.answers import final_answers
from tests.auxil.database import migrated_engine
from tests.auxil.patient import EVERY_ANSWER, EVERY_ANSWER_TAPS, answer_questionnaire, skip_questionnaire
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import (
    ChildProcess,
    child_env,
    free_port,
    port_open,
    postgres_database,
    python_command,
    wait_until,
)

pytestmark = pytest.mark.e2e
RUNS_LONG = True  # tests/conftest.py: started first

PHOTOS = 200
FIRST_CHAT = 6_000
LEASE_S = 3.0
TOKEN = "4343:multi-host-token"
CHAT_HASH_KEY = "multi-host-chat-hash-key"
CLINICIANS = (9001, 9002)


@dataclass
class Host:
    """One machine: its processes (each its own process group) and its working folder."""

    name: str
    folder: Path
    processes: list[ChildProcess] = field(default_factory=list)

    def start(self, role: str, command: list[str], env: dict[str, str]) -> ChildProcess:
        child = ChildProcess(f"{self.name}-{role}", command, env, self.folder, cwd=self.folder)
        self.processes.append(child)
        return child

    def process(self, role: str) -> ChildProcess:
        return next(p for p in self.processes if p.name == f"{self.name}-{role}")

    def lose(self) -> None:
        """The machine is gone: every process killed at once, none stopping cleanly."""
        for child in self.processes:
            if child.alive():
                child.stop(signal.SIGKILL)

    def stop(self) -> None:
        for child in reversed(self.processes):
            if child.alive():
                child.stop()


def start_application(host: Host, env: dict[str, str], *, leads: bool) -> None:
    """A worker and a bot replica on ``host``; the first host's bot leads, the second's waits as a standby."""
    worker = host.start("worker", worker_command(Settings(worker_concurrency=1), hostname=f"{host.name}@%h"), env)
    bot = host.start("bot", python_command("-m", "skinsense.cli", "bot"), env)
    wait_until(lambda: "ready." in worker.output(), 120, what=f"{host.name}'s worker")
    said = f"replica {host.name} leads" if leads else f"{host.name} is a standby"
    wait_until(lambda: said in bot.output(), 60, what=f"{host.name}'s bot: {said}")


@contextlib.contextmanager
def two_hosts(redis_url: str, database_url: str, workdir: Path) -> Iterator[tuple[SandboxUser, Host, Host]]:
    port = free_port()
    common: dict[str, object] = dict(
        redis_key_prefix=f"hosts-{uuid.uuid4().hex[:8]}:",
        telegram_token=TOKEN,
        telegram_api_url=f"http://127.0.0.1:{port}",
        redis_url=redis_url,
        database_url=database_url,
        clinician_chat_ids=",".join(map(str, CLINICIANS)),
        chat_hash_key=CHAT_HASH_KEY,
        worker_concurrency=1,
        questionnaire_timeout_s=300,  # every patient answers or skips: a closed questionnaire is the failover's
        bot_leader_lease_s=LEASE_S,
        reconcile_interval_s=5,
        queued_deadline_s=20,
        log_level="INFO",
    )
    infra = Host("infra", workdir / "infra")
    hosts = [Host(name, workdir / name) for name in ("host-a", "host-b")]
    for host in [infra, *hosts]:
        host.folder.mkdir(parents=True)
    try:
        infra.start(
            "sandbox",
            python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", TOKEN),
            child_env(**common),
        )
        wait_until(lambda: port_open(port), 30, what="sandbox")
        migrated_engine(database_url)
        infra.start("beat", beat_command(infra.folder / "celerybeat-schedule"), child_env(**common))
        user = SandboxUser(f"http://127.0.0.1:{port}")
        for host in hosts:
            env = child_env(
                **common,
                bot_replica_id=host.name,
                bot_metrics_port=free_port(),
                worker_metrics_port=free_port(),
            )
            start_application(host, env, leads=host is hosts[0])
        yield user, hosts[0], hosts[1]
    finally:
        for host in [*hosts, infra]:
            host.stop()


@dataclass(frozen=True)
class Patient:
    chat: int
    does: str  # "answers", "agrees", "declines" or "skips"


def patients() -> list[Patient]:
    kinds = ["answers", "agrees", "skips", "declines", "skips", "answers", "agrees", "skips", "skips", "skips"]
    return [Patient(FIRST_CHAT + i, kinds[i % len(kinds)]) for i in range(PHOTOS)]


def wait_for_acknowledged(user: SandboxUser, count: int) -> None:
    def enough() -> bool:
        return (
            sum(1 for c in user.calls("sendMessage") if c["parameters"].get("text") == patient_texts.ANALYSING) >= count
        )

    wait_until(enough, 120, interval_s=0.3, what=f"{count} photos acknowledged")


def test_two_bots_and_two_worker_hosts_lose_the_leader_and_a_host_mid_burst_and_every_photo_is_answered_once(
    redis_url: str, postgres_admin_url: str, tmp_path: Path, phone_photo: Path, photos_by_risk: dict[str, Path]
) -> None:
    everyone = patients()
    photo_of = {"answers": phone_photo.read_bytes()}  # a phone photo: the answers count in its result
    other = photos_by_risk["low"].read_bytes()
    with (
        postgres_database(postgres_admin_url) as database_url,
        two_hosts(redis_url, database_url, tmp_path) as (
            user,
            host_a,
            host_b,
        ),
    ):
        consented = [p for p in everyone if p.does in ("answers", "skips")]
        patients_store = PatientStore(migrated_engine(database_url))
        for patient in consented:  # agreed before, as the bot records it
            patients_store.record_consent(chat_reference(patient.chat, CHAT_HASH_KEY), patient_texts.PRIVACY_VERSION)

        faults: list[str] = []

        def lose_the_leader_then_its_host() -> None:
            wait_for_acknowledged(user, len(consented) // 4)
            host_a.process("bot").stop(signal.SIGKILL)
            faults.append("leader killed")
            wait_for_acknowledged(user, len(consented) // 2)
            host_a.lose()
            faults.append("host-a lost")

        fault = threading.Thread(target=lose_the_leader_then_its_host, daemon=True)
        fault.start()
        sent = {p.chat: user.send_photo(p.chat, photo_of.get(p.does, other))["message_id"] for p in everyone}

        def interact(patient: Patient) -> None:
            photo_id = sent[patient.chat]
            if patient.does in ("agrees", "declines"):
                label = (
                    patient_texts.CONSENT_AGREE_BUTTON
                    if patient.does == "agrees"
                    else patient_texts.CONSENT_DECLINE_BUTTON
                )
                prompt = user.wait_for_button(patient.chat, label, after_id=photo_id, timeout_s=120)
                user.tap(patient.chat, prompt["message_id"], label)
                if patient.does == "declines":
                    wait_until(
                        lambda: any(
                            m.get("text") == plain_text(patient_texts.CONSENT_DECLINED, "HTML")
                            for m in user.bot_messages(patient.chat)
                        ),
                        120,
                        what="the decline",
                    )
                    return
            if patient.does == "answers":
                answer_questionnaire(user, patient.chat, photo_id, EVERY_ANSWER_TAPS)
            else:
                skip_questionnaire(user, patient.chat, photo_id)

        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(interact, everyone))
        fault.join(timeout=180)
        assert faults == ["leader killed", "host-a lost"], faults

        answered = [p for p in everyone if p.does != "declines"]
        waiting = {p.chat for p in answered}

        def all_answered() -> bool:
            for chat in list(waiting):
                if final_answers(user.messages(chat), sent[chat]) >= 1:
                    waiting.discard(chat)
            return not waiting

        wait_until(all_answered, 240, interval_s=2, what="every photo's answer")
        assert "replica host-b leads" in host_b.process("bot").output()
        time.sleep(2 * LEASE_S)  # a second answer, from either replica, would show by now

        closed = plain_text(questionnaire_texts.QUESTIONNAIRE_CLOSED, "HTML")
        for patient in everyone:
            messages = user.messages(patient.chat)
            answers = final_answers(messages, sent[patient.chat])
            assert answers == (0 if patient.does == "declines" else 1), (patient, answers)
            told = [m.get("text") for m in messages] + [a.get("text") for a in user.answers(patient.chat)]
            assert closed not in told, f"the failover closed the questionnaire of {patient}"

        engine = migrated_engine(database_url)
        references = {chat_reference(p.chat, CHAT_HASH_KEY): p for p in everyone}
        with Session(engine) as session:
            jobs = [job for job in session.exec(select(Job)).all() if job.chat_ref in references]
            held = session.exec(select(HeldPhoto).where(col(HeldPhoto.chat_ref).in_(references))).all()
            profiles = session.exec(select(PatientProfile).where(col(PatientProfile.chat_ref).in_(references))).all()
        engine.dispose()
        assert sorted(references[job.chat_ref].chat for job in jobs) == sorted(p.chat for p in answered), (
            "one job per photo analysed, none for a patient who said No thanks"
        )
        assert held == [], "no photo is left held"
        declined = {chat_reference(p.chat, CHAT_HASH_KEY) for p in everyone if p.does == "declines"}
        assert not [profile for profile in profiles if profile.chat_ref in declined], "nothing kept after No thanks"
        for job in jobs:
            if references[job.chat_ref].does == "answers":
                assert PatientAnswers.model_validate(job.answers) == EVERY_ANSWER, "every answer is in the result"
                assert set(job.answers_used or ()) == set(EVERY_ANSWER.known())
