"""Durable intake and Telegram faults on the real stack (sandbox, redis-server, a Celery worker, the bot):
the bot killed with SIGKILL in the middle of a burst, in polling and in webhook mode, and a storm of 429s and
5xx on every Bot API method: every photo is answered exactly once."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.patients import PatientStore
from shared.audit import InboundUpdate, chat_reference
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import ChildProcess, free_port, port_open, python_command, wait_until
from tests.auxil.stack import CHAT_HASH_KEY, RunningStack, running_stack

pytestmark = pytest.mark.e2e
PHOTOS = 30


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("durable-intake")
    # Results go out when the questionnaire times out: nobody answers it in these tests.
    with running_stack(redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, questionnaire_timeout_s=3) as s:
        s.bot.stop()  # each test runs (and kills) a bot of its own
        yield s


def consented_chats(stack: RunningStack, first: int, count: int = PHOTOS) -> list[int]:
    """Chats that agreed to the privacy text already (recorded as the consent button does), so that the burst
    is photos only."""
    chats = list(range(first, first + count))
    patients = PatientStore(stack.engine)
    for chat in chats:
        patients.record_consent(chat_reference(chat, CHAT_HASH_KEY), patient_texts.PRIVACY_VERSION)
    return chats


def analysing_sent(user: SandboxUser, chats: list[int]) -> int:
    return sum(1 for chat in chats if user.bot_messages(chat))


def final_replies(user: SandboxUser, chat: int, photo_message_id: int) -> list[dict[str, Any]]:
    return [m for m in user.replies_to(chat, photo_message_id) if not m.get("text", "").startswith("Analysing")]


def logs_of(stack: RunningStack, bot: ChildProcess) -> Callable[[], str]:
    return lambda: "\n".join(f"----- {c.name} -----\n{c.output()[-5000:]}" for c in (stack.worker, bot))


def assert_every_photo_answered_once(
    user: SandboxUser, sent: dict[int, int], logs: Callable[[], str], *, killed: bool = False
) -> None:
    """Each photo gets exactly one result. ``killed``: a photo being handled when the bot died is handled again
    after the restart, going on from where it stopped (photo intake is idempotent by update key, bot/intake.py);
    only when the kill fell between sending "Analysing..." and recording that message can a second "Analysing..."
    appear (Telegram has no idempotent send), so at most the bot's 8 concurrent updates may show one, never a
    second result."""

    def all_answered() -> bool:
        return all(final_replies(user, chat, message_id) for chat, message_id in sent.items())

    try:
        wait_until(all_answered, 90, what=f"a reply to each of the {len(sent)} photos")
    except AssertionError as error:
        unanswered = [chat for chat, message_id in sent.items() if not final_replies(user, chat, message_id)]
        raise AssertionError(f"{error}: {len(unanswered)} unanswered\n{logs()}") from None
    stray_analysing = []
    for chat, message_id in sent.items():
        results = final_replies(user, chat, message_id)
        assert len(results) == 1, f"chat {chat}: {len(results)} results\n{logs()}"
        assert result_texts.RANKING_HEADING in results[0]["text"], results[0]["text"]
        if len(user.replies_to(chat, message_id)) > 1:
            stray_analysing.append(chat)
    assert len(stray_analysing) <= (8 if killed else 0), f"stray 'Analysing...' in chats {stray_analysing}"


def restart_bot(stack: RunningStack, log_dir: Path, **extra_env: str) -> ChildProcess:
    env = {**stack.env, **{f"SKINSENSE_{k.upper()}": v for k, v in extra_env.items()}}
    return ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), env, log_dir)


def test_after_a_restart_with_update_ids_starting_again_every_message_is_answered(
    stack: RunningStack, tmp_path: Path
) -> None:
    """A fresh Bot API server (here a new sandbox; a new token or Telegram after a quiet week alike) numbers its
    updates from 1 again: the first messages after the restart carry ids the bot processed before, and must be
    answered, not skipped as already processed."""
    chats = list(range(55000, 55005))
    bot = restart_bot(stack, tmp_path)
    try:
        for chat in chats:
            stack.user.send_text(chat, "/about")
        wait_until(lambda: all(stack.user.bot_messages(chat) for chat in chats), 60, what="answers before the restart")
    finally:
        bot.stop()
    port = free_port()
    token = stack.env["SKINSENSE_TELEGRAM_TOKEN"]
    fresh_api = {**stack.env, "SKINSENSE_TELEGRAM_API_URL": f"http://127.0.0.1:{port}"}
    sandbox_command = python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", token)
    fresh_sandbox = ChildProcess("sandbox-fresh", sandbox_command, fresh_api, tmp_path)
    wait_until(lambda: port_open(port), 30, what="the fresh sandbox")
    bot = ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), fresh_api, tmp_path)
    try:
        user = SandboxUser(f"http://127.0.0.1:{port}")
        wait_until(lambda: user.calls("getUpdates"), 60, what="the bot polling the fresh sandbox")
        sent = [user.send_text(chat, "/about") for chat in chats[:3]]
        # Numbered from 1 again (the bot's answers take numbers too, so only the first is certain).
        assert sent[0]["message_id"] == 1, "the fresh sandbox starts again"
        wait_until(lambda: all(user.bot_messages(chat) for chat in chats[:3]), 60, what="answers after the restart")
        assert "already processed: skipped" not in bot.output()
    finally:
        bot.stop()
        fresh_sandbox.stop()


def burst_then_kill(stack: RunningStack, bot: ChildProcess, photo: bytes, chats: list[int]) -> dict[int, int]:
    """Every chat sends a photo at once; the bot is killed (SIGKILL) once it has fetched them and answered a few."""
    sent = {chat: stack.user.send_photo(chat, photo)["message_id"] for chat in chats}
    wait_until(lambda: analysing_sent(stack.user, chats) >= 3, 60, what="the bot to start on the burst")
    bot.stop(signal.SIGKILL)
    assert analysing_sent(stack.user, chats) < len(chats), "killed before the burst was handled"
    return sent


def assert_updates_erased_once_processed(stack: RunningStack) -> None:
    def all_processed() -> bool:
        with Session(stack.engine) as session:
            return all(row.processed_at is not None for row in session.exec(select(InboundUpdate)))

    wait_until(all_processed, 30, what="every recorded update to be marked processed")
    with Session(stack.engine) as session:
        rows = session.exec(select(InboundUpdate)).all()
    assert rows and all(row.sealed_update is None for row in rows), "the raw update is erased once handled"


def test_the_bot_killed_mid_burst_loses_no_photo_in_polling_mode(
    stack: RunningStack, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    chats = consented_chats(stack, 51000)
    bot = restart_bot(stack, tmp_path)
    try:
        wait_until(lambda: "polling mode" in bot.output(), 60, what="the bot polling")
        sent = burst_then_kill(stack, bot, photos_by_risk["low"].read_bytes(), chats)
        bot = restart_bot(stack, tmp_path)
        assert_every_photo_answered_once(stack.user, sent, logs_of(stack, bot), killed=True)
        assert_updates_erased_once_processed(stack)
    finally:
        bot.stop()


def test_the_bot_killed_mid_burst_loses_no_photo_in_webhook_mode(
    stack: RunningStack, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    chats = consented_chats(stack, 52000)
    port = free_port()
    webhook = {"webhook_url": f"http://127.0.0.1:{port}", "webhook_port": str(port), "webhook_secret": "hook"}
    bot = restart_bot(stack, tmp_path, **webhook)
    try:
        wait_until(lambda: stack.user.calls("setWebhook"), 60, what="the webhook to be set")
        wait_until(lambda: "webhook mode" in bot.output(), 60, what="the bot in webhook mode")
        sent = burst_then_kill(stack, bot, photos_by_risk["low"].read_bytes(), chats)
        bot = restart_bot(stack, tmp_path, **webhook)
        assert_every_photo_answered_once(stack.user, sent, logs_of(stack, bot), killed=True)
        assert_updates_erased_once_processed(stack)
    finally:
        bot.stop()
        stack.user.http.post(f"/bot{stack.env['SKINSENSE_TELEGRAM_TOKEN']}/deleteWebhook")


def test_a_storm_of_429_and_5xx_on_every_method_still_answers_every_photo_once(
    stack: RunningStack, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    chats = consented_chats(stack, 53000, count=15)
    bot = restart_bot(stack, tmp_path)
    try:
        wait_until(lambda: "polling mode" in bot.output(), 60, what="the bot polling")
        stack.user.clear_faults()
        stack.user.inject_fault_rates("*", rate_429=0.1, rate_5xx=0.1, retry_after=1, seed=9)
        sent = {chat: stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())["message_id"] for chat in chats}
        assert_every_photo_answered_once(stack.user, sent, logs_of(stack, bot))
        report = stack.user.fault_report()
        stack.user.clear_faults()
        assert report["total"]["429"] > 0 and report["total"]["5xx"] > 0
        assert any(sum(report["injected"].get(m, {}).values()) for m in ("getFile", "download")), report
        assert_flood_waits_honoured(stack.user, retry_after=1.0)
    finally:
        stack.user.clear_faults()
        bot.stop()


def assert_flood_waits_honoured(user: SandboxUser, retry_after: float) -> None:
    """After a 429 on a call to a chat, the same call to that chat comes again no sooner than retry_after."""
    calls = [c for c in user.calls() if c["method"] in ("sendMessage", "editMessageText")]
    checked = 0
    for index, call in enumerate(calls):
        if call.get("fault") != "429":
            continue
        same = [
            c
            for c in calls[index + 1 :]
            if c["method"] == call["method"] and c["parameters"].get("chat_id") == call["parameters"].get("chat_id")
        ]
        if same:
            assert same[0]["time"] - call["time"] >= retry_after - 0.05, (call, same[0])
            checked += 1
    assert checked > 0, "no 429 on a send to check"


def test_photos_sent_while_the_database_is_write_locked_are_answered_once_it_is_free(
    stack: RunningStack, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    chats = consented_chats(stack, 54000, count=10)
    bot = restart_bot(stack, tmp_path)
    try:
        wait_until(lambda: "polling mode" in bot.output(), 60, what="the bot polling")
        database = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"), timeout=30)
        database.execute("BEGIN EXCLUSIVE")  # no one else writes until the rollback (longer than busy_timeout)
        try:
            sent = {
                chat: stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())["message_id"] for chat in chats
            }
            wait_until(lambda: "not recorded (OperationalError)" in bot.output(), 60, what="a refused insert")
            assert analysing_sent(stack.user, chats) == 0, "nothing handled before it is recorded"
        finally:
            database.rollback()
            database.close()
        assert_every_photo_answered_once(stack.user, sent, logs_of(stack, bot))
        assert_updates_erased_once_processed(stack)
    finally:
        bot.stop()
