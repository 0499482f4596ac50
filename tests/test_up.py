"""``skinsense up`` with no token: starts Redis, the sandbox, a worker, beat, the bot and Flower; Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.auxil.patient import send_photo_skipping_questions
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import child_env, free_port, port_open, wait_until

pytestmark = pytest.mark.e2e


def test_up_runs_the_stack_on_the_sandbox_and_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    redis_port, sandbox_port, flower_port = free_port(), free_port(), free_port()
    env = child_env(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        sandbox_port=sandbox_port,
        flower_port=flower_port,
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        worker_concurrency=1,
        worker_metrics_port=free_port(),
        bot_metrics_port=free_port(),
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "skinsense.cli", "up"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "No SKINSENSE_TELEGRAM_TOKEN is set" in log_path.read_text(), 60, what="the sandbox how-to")
        assert port_open(redis_port), "up started its own redis-server when none answered"
        user = SandboxUser(f"http://127.0.0.1:{sandbox_port}")
        wait_until(lambda: user.calls("getUpdates"), 60, what="the bot polling")
        photo = next((data_dir / "images").glob("*.jpg")).read_bytes()
        sent = send_photo_skipping_questions(user, 77, photo)
        reply = user.wait_for_reply(77, sent["message_id"], timeout_s=120)
        assert "Most likely lesion types" in reply["text"], log_path.read_text()[-3000:]
        wait_until(lambda: port_open(flower_port), 60, what="Flower")
        wait_until(lambda: any((tmp_path / "var").glob("celerybeat-schedule*")), 60, what="beat (retention purge)")
    finally:
        up.send_signal(signal.SIGINT)  # what Ctrl-C does
        code = up.wait(timeout=90)
    assert code == 0, log_path.read_text()[-3000:]
    for port in (redis_port, sandbox_port, flower_port):
        assert not port_open(port), f"port {port} still open after Ctrl-C"


def test_a_second_signal_while_stopping_still_stops_everything(tmp_path: Path) -> None:
    redis_port, sandbox_port, flower_port = free_port(), free_port(), free_port()
    env = child_env(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        sandbox_port=sandbox_port,
        flower_port=flower_port,
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        worker_concurrency=1,
        worker_metrics_port=free_port(),
        bot_metrics_port=free_port(),
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "skinsense.cli", "up"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: port_open(flower_port), 90, what="Flower, the last process up starts")
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C, then an impatient second one while the stack stops
        wait_until(lambda: "Ctrl-C: stopping" in log_path.read_text(), 30, what="the stop to begin")
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=90)
    assert code == 0, log_path.read_text()[-3000:]
    for port in (redis_port, sandbox_port, flower_port):
        assert not port_open(port), f"port {port} still open after the second signal"
