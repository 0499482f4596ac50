"""``skinsense up`` with no token: starts Redis, the sandbox, a worker, beat, the bot and Flower; restarts what
crashes; Ctrl-C stops all."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import Settings
from shared.texts import result as result_texts
from skinsense.processes import stop_process_group
from skinsense.stack import RestartPolicy, Stack, ensure_redis, redis_persistence_warning
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
        assert result_texts.RANKING_HEADING in reply["text"], log_path.read_text()[-3000:]
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


def _children_of(pid: int) -> dict[int, str]:
    """The direct children of ``pid`` and their command lines (Linux /proc)."""
    children: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children[int(entry.name)] = command
    return children


def _child_running(up_pid: int, marker: str) -> int | None:
    return next((pid for pid, command in _children_of(up_pid).items() if marker in command), None)


def test_a_killed_worker_and_bot_are_restarted_and_the_next_photo_is_answered(tmp_path: Path, data_dir: Path) -> None:
    redis_port, sandbox_port = free_port(), free_port()
    env = child_env(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        sandbox_port=sandbox_port,
        flower_port=free_port(),
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
        user = SandboxUser(f"http://127.0.0.1:{sandbox_port}")
        wait_until(lambda: port_open(sandbox_port) and user.calls("getUpdates"), 90, what="the bot polling")
        worker_pid = wait_until(
            lambda: _child_running(up.pid, "celery -A worker.celery_app worker"), 30, what="the worker"
        )
        bot_pid = wait_until(lambda: _child_running(up.pid, "skinsense.cli bot"), 30, what="the bot")
        os.kill(worker_pid, signal.SIGKILL)
        os.kill(bot_pid, signal.SIGKILL)
        wait_until(
            lambda: "worker exited (signal SIGKILL)" in log_path.read_text(), 30, what="the worker's exit logged"
        )
        wait_until(lambda: "bot exited (signal SIGKILL)" in log_path.read_text(), 30, what="the bot's exit logged")
        new_worker = wait_until(
            lambda: _child_running(up.pid, "celery -A worker.celery_app worker"), 60, what="a new worker"
        )
        new_bot = wait_until(lambda: _child_running(up.pid, "skinsense.cli bot"), 60, what="a new bot")
        assert (new_worker, new_bot) != (worker_pid, bot_pid)
        photo = next((data_dir / "images").glob("*.jpg")).read_bytes()
        sent = send_photo_skipping_questions(user, 78, photo)
        reply = user.wait_for_reply(78, sent["message_id"], timeout_s=120)
        assert result_texts.RANKING_HEADING in reply["text"], log_path.read_text()[-3000:]
        assert up.poll() is None, "the stack kept running"
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=90)
    assert code == 0, log_path.read_text()[-3000:]
    assert not port_open(redis_port) and not port_open(sandbox_port)


def test_a_process_that_keeps_crashing_is_reported_and_the_stack_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    stack = Stack(
        RestartPolicy(first_delay_s=0.05, max_delay_s=0.1, stable_after_s=30, crash_loop_exits=3, give_up_exits=5)
    )
    stack.start("doomed", [sys.executable, "-c", "import sys; sys.exit(3)"])
    stack.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with caplog.at_level(logging.INFO, logger="skinsense.stack"):
            assert stack.watch(interval_s=0.05) == 1, "a crash loop past the bound stops the stack"
        assert stack.service("doomed").restarts == 4
        assert "doomed exited (exit code 3)" in caplog.text
        assert "doomed is crash-looping" in caplog.text
        assert "giving up" in caplog.text
        assert stack.service("steady").restarts == 0 and stack.service("steady").process.poll() is None
    finally:
        stack.stop()
    assert stack.service("steady").process.poll() is not None


def test_an_adopted_redis_without_persistence_is_warned_about_and_replaced_when_it_goes_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second `up` may find the first one's Redis still answering while that `up` stops: it must not be left
    with no broker when that Redis goes."""
    import redis

    monkeypatch.chdir(tmp_path)  # our redis-server keeps its append-only file under ./var/redis
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    others = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    stack = Stack()
    try:
        wait_until(lambda: port_open(port), 20, what="the other Redis")
        with caplog.at_level(logging.INFO, logger="skinsense.stack"):
            ensure_redis(stack, Settings(redis_url=url))
            assert "keeps nothing on disk" in caplog.text, "queues would be lost on its restart: say so"
            assert stack.services == [], "a Redis that answers is used, not started again"
            stop_process_group(others)
            wait_until(lambda: stack.supervise_once() and stack.services, 30, what="our own Redis")
        assert stack.service("redis").process.poll() is None
        wait_until(lambda: port_open(port), 20, what="our Redis answering")
        with redis.Redis.from_url(url) as client:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert redis_persistence_warning(url) is None
    finally:
        stack.stop()
        stop_process_group(others)
    assert not port_open(port)
