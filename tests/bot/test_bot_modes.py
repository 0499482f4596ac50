"""The bot on its own against the sandbox: webhook mode, and a broker that is down."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image
from sqlmodel import Session, select

from shared.audit import Job, JobStatus
from shared.db import build_engine
from shared.queue import CLASSIFY_QUEUE
from shared.texts import patient as patient_texts
from skinsense.migrate import upgrade_database
from skinsense.sandbox import plain_text
from tests.auxil.patient import consent
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import (
    ChildProcess,
    child_env,
    free_port,
    port_open,
    python_command,
    redis_server,
    wait_until,
)

pytestmark = pytest.mark.e2e
TOKEN = "5151:bot-modes-token"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxUser]:
    port = free_port()
    child = ChildProcess(
        "sandbox",
        python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", TOKEN),
        child_env(),
        tmp_path,
    )
    try:
        wait_until(lambda: port_open(port), 30, what="sandbox")
        yield SandboxUser(f"http://127.0.0.1:{port}")
    finally:
        child.stop()


def bot_env(sandbox: SandboxUser, tmp_path: Path, redis_url: str, **extra: object) -> dict[str, str]:
    database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    upgrade_database(database_url)
    return child_env(
        telegram_token=TOKEN, telegram_api_url=sandbox.api_url, database_url=database_url, redis_url=redis_url, **extra
    )


def test_webhook_mode_receives_updates_pushed_by_the_bot_api(
    sandbox: SandboxUser, tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    webhook = {"webhook_url": f"http://127.0.0.1:{port}", "webhook_port": port, "webhook_secret": "hook-secret"}
    env = bot_env(sandbox, tmp_path, redis_url, **webhook)
    bot = ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), env, tmp_path)
    try:
        wait_until(lambda: sandbox.calls("setWebhook"), 60, what="setWebhook")
        registered = sandbox.calls("setWebhook")[-1]["parameters"]
        assert registered["url"] == f"http://127.0.0.1:{port}/telegram"
        assert registered["secret_token"] == "hook-secret"
        sent = sandbox.send_text(3001, "/start")
        wait_until(
            lambda: [m for m in sandbox.bot_messages(3001) if m["text"] == plain_text(patient_texts.PRIVACY, "HTML")],
            60,
            what="the /start reply (consent first) through the webhook",
        )
        assert sandbox.calls("getUpdates") == [], "no polling in webhook mode"
        assert sent["message_id"]
    finally:
        bot.stop()


def test_broker_down_keeps_the_photo_queued_tells_the_patient_of_a_delay_and_queues_it_when_back(
    sandbox: SandboxUser, tmp_path: Path
) -> None:
    broker_port = free_port()  # nothing listens here until the broker "comes back"
    broker_url = f"redis://127.0.0.1:{broker_port}/0"
    env = bot_env(sandbox, tmp_path, broker_url)
    bot = ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), env, tmp_path)
    engine = build_engine(f"sqlite:///{tmp_path / 'audit.sqlite3'}")

    def the_job() -> Job | None:
        with Session(engine) as session:
            return session.exec(select(Job)).one_or_none()

    try:
        wait_until(lambda: sandbox.calls("getUpdates"), 60, what="the bot polling")
        photo = io.BytesIO()
        Image.new("RGB", (200, 150), (190, 140, 120)).save(photo, "JPEG")
        consent(sandbox, 3002)  # the consent needs no broker
        sent = sandbox.send_photo(3002, photo.getvalue())
        wait_until(
            lambda: [
                m for m in sandbox.replies_to(3002, sent["message_id"]) if m["text"] == patient_texts.TAKING_LONGER
            ],
            120,
            what="the 'taking longer' notice",
        )
        job = the_job()
        assert job is not None and job.status == JobStatus.QUEUED and job.replied_at is None, "nothing is failed"
        assert job.queued_at is None
        with redis_server(tmp_path, port=broker_port):
            # The bot handles the update again with backoff and queues the job on the broker that is back.
            wait_until(lambda: (j := the_job()) is not None and j.queued_at is not None, 90, what="the job queued")
            queue_length = redis.Redis.from_url(broker_url).llen(CLASSIFY_QUEUE)
            assert queue_length == 1, "one classify message for the one photo"
        notices = [m for m in sandbox.bot_messages(3002) if m["text"] == patient_texts.TAKING_LONGER]
        assert len(notices) == 1, "the delay is told once"
        assert not [m for m in sandbox.bot_messages(3002) if m["text"] == patient_texts.ENQUEUE_FAILED]
    finally:
        bot.stop()


def test_a_failing_handler_logs_its_traceback_without_the_token(
    sandbox: SandboxUser, tmp_path: Path, redis_url: str
) -> None:
    env = bot_env(sandbox, tmp_path, redis_url)
    bot = ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), env, tmp_path)
    try:
        wait_until(lambda: sandbox.calls("getUpdates"), 60, what="the bot polling")
        # The /start reply is sent but its answer lost: a send is not repeated blindly, the handler fails.
        sandbox.inject_fault("sendMessage", count=1, kind="drop")
        sandbox.send_text(3003, "/start")
        wait_until(lambda: "error while handling an update" in bot.output(), 60, what="the error handler")
        wait_until(lambda: "OutcomeUnknown" in bot.output(), 10, what="the traceback")
        output = bot.output()
        assert "Traceback (most recent call last)" in output
        assert TOKEN not in output and TOKEN.split(":")[1] not in output
    finally:
        bot.stop()
