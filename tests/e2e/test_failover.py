"""Two bot processes on the real stack (sandbox, redis-server, a Celery worker, SQLite): one leads and polls,
the other is a standby that reports not ready; the leader killed (SIGKILL), the standby takes over within a
lease and every message, before and after, is answered exactly once (bot/leadership.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.auxil.services import ChildProcess, free_port, python_command, wait_until
from tests.auxil.stack import running_stack

pytestmark = pytest.mark.e2e

LEASE_S = 3.0
BEFORE, AFTER = 4_101, 4_102  # a chat answered by the first leader, and one sent after it was killed


def readiness(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)


def test_the_standby_bot_takes_over_from_a_killed_leader_and_every_message_is_answered_once(
    redis_url: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    with running_stack(
        redis_url, database_url, tmp_path, bot_replica_id="replica-a", bot_leader_lease_s=LEASE_S
    ) as stack:
        standby_port = free_port()
        standby_env = {
            **stack.env,
            "SKINSENSE_BOT_REPLICA_ID": "replica-b",
            "SKINSENSE_BOT_METRICS_PORT": str(standby_port),
        }
        standby = ChildProcess("standby-bot", python_command("-m", "skinsense.cli", "bot"), standby_env, tmp_path)
        try:
            wait_until(lambda: "replica-b is a standby" in standby.output(), 60, what="the second bot as a standby")
            not_ready = wait_until(lambda: _answering(standby_port), 30, what="the standby's health endpoint")
            assert not_ready.status_code == 503 and "standby" in not_ready.text, "a standby is not ready"

            stack.user.send_text(BEFORE, "/start")
            wait_until(lambda: stack.user.bot_messages(BEFORE), 60, what="the leader's answer")

            stack.bot.stop(signal.SIGKILL)
            stack.user.send_text(AFTER, "/start")
            wait_until(lambda: stack.user.bot_messages(AFTER), 60, what="the standby's answer, once it leads")
            assert "replica-b leads" in standby.output(), standby.output()[-3000:]
            assert readiness(standby_port).status_code == 200, "the new leader reports ready"

            time.sleep(2 * LEASE_S)  # a second answer, from either process, would show by now
            assert len(stack.user.bot_messages(BEFORE)) == 1, stack.logs()
            assert len(stack.user.bot_messages(AFTER)) == 1, standby.output()[-3000:]
        finally:
            standby.stop()


def _answering(port: int) -> httpx.Response | None:
    try:
        return readiness(port)
    except httpx.HTTPError:
        return None
