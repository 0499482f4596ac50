"""The one retry policy and shared limiter of every Telegram call (shared/telegram_calls.py), against the sandbox
and a real Redis: 429 waits exactly retry_after and pauses every process, sends are repeated only when they
never arrived, 4xx are never repeated, the per-chat budget spaces messages out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from prometheus_client import REGISTRY
from telegram.error import BadRequest
from telegram.ext import ExtBot

from shared.telegram_calls import (
    OutcomeUnknown,
    TelegramCallLimiter,
    WaitTooLong,
    retry_after_seconds,
    telegram_request,
)
from tests.auxil.sandbox_user import SandboxUser, running_sandbox
from tests.auxil.services import free_port, wait_until

TOKEN = "7373:telegram-calls-token"
T = TypeVar("T")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxUser]:
    with running_sandbox(TOKEN, tmp_path_factory.mktemp("calls-sandbox")) as user:
        yield user


@pytest.fixture
def key_prefix() -> str:
    """A deployment of its own per test: pauses and budgets of one test never hold another."""
    return f"test-{uuid.uuid4().hex[:8]}:"


def a_process(sandbox: SandboxUser, redis_url: str, key_prefix: str, name: str) -> ExtBot[None]:
    """What the bot and each worker build: an ExtBot with its own limiter and Redis connection."""
    limiter = TelegramCallLimiter(redis_url=redis_url, key_prefix=key_prefix, chat_hash_key="k", process=name)
    return ExtBot(
        TOKEN,
        base_url=f"{sandbox.api_url}/bot",
        base_file_url=f"{sandbox.api_url}/file/bot",
        request=telegram_request(),
        rate_limiter=limiter,
    )


def run(*bots: ExtBot[None], work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        for bot in bots:
            assert bot.rate_limiter is not None
            await bot.rate_limiter.initialize()
        try:
            return await work()
        finally:
            for bot in bots:
                await bot.shutdown()
                assert bot.rate_limiter is not None
                await bot.rate_limiter.shutdown()

    return asyncio.run(main())


def sent_texts(sandbox: SandboxUser, chat: int) -> list[str]:
    return [str(m.get("text")) for m in sandbox.bot_messages(chat)]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_429_in_one_process_pauses_the_other_for_exactly_retry_after(
    sandbox: SandboxUser, redis_url: str, key_prefix: str
) -> None:
    first, second = (a_process(sandbox, redis_url, key_prefix, name) for name in ("bot", "worker"))
    sandbox.inject_fault("sendMessage", count=1, retry_after=3)
    floods_before = counter("skinsense_telegram_flood_control_total", process="bot")

    async def work() -> None:
        told = asyncio.create_task(first.send_message(4001, "held by flood control"))
        await asyncio.to_thread(
            wait_until, lambda: [c for c in sandbox.calls("sendMessage") if c.get("fault") == "429"], 20, what="429"
        )
        await asyncio.sleep(0.5)  # the pause is in Redis by now
        await second.send_chat_action(4002, "typing")
        await told

    run(first, second, work=work)
    refused = next(c for c in sandbox.calls("sendMessage") if c.get("fault") == "429")
    retried = [c for c in sandbox.calls("sendMessage") if int(c["parameters"]["chat_id"]) == 4001][-1]
    other = [c for c in sandbox.calls("sendChatAction") if int(c["parameters"]["chat_id"]) == 4002][-1]
    assert retried["time"] - refused["time"] >= 3.0 - 0.05, "the told process waits retry_after"
    assert other["time"] - refused["time"] >= 3.0 - 0.05, "the other process waits too"
    assert sent_texts(sandbox, 4001) == ["held by flood control"]
    assert counter("skinsense_telegram_flood_control_total", process="bot") == floods_before + 1
    pause = redis.Redis.from_url(redis_url).pttl(f"{key_prefix}skinsense:telegram:paused-until")
    assert pause == -2 or 0 < pause <= 1000, "the pause key expires just after the pause"


def test_a_send_refused_by_a_5xx_is_sent_again_once_delivered(
    sandbox: SandboxUser, redis_url: str, key_prefix: str
) -> None:
    bot = a_process(sandbox, redis_url, key_prefix, "bot")
    sandbox.inject_fault("sendMessage", count=2, kind="5xx", status=502)
    retries_before = counter("skinsense_task_retries_total", cause="network")
    run(bot, work=lambda: bot.send_message(4003, "after two 502s"))
    assert sent_texts(sandbox, 4003) == ["after two 502s"]
    assert counter("skinsense_task_retries_total", cause="network") == retries_before + 2


def test_a_send_whose_answer_was_lost_is_not_repeated(sandbox: SandboxUser, redis_url: str, key_prefix: str) -> None:
    bot = a_process(sandbox, redis_url, key_prefix, "bot")
    sandbox.inject_fault("sendMessage", count=1, kind="drop")
    with pytest.raises(OutcomeUnknown):
        run(bot, work=lambda: bot.send_message(4004, "delivered, answer lost"))
    assert sent_texts(sandbox, 4004) == ["delivered, answer lost"], "no blind duplicate"


def test_an_edit_whose_answer_was_lost_is_repeated(sandbox: SandboxUser, redis_url: str, key_prefix: str) -> None:
    bot = a_process(sandbox, redis_url, key_prefix, "bot")

    async def work() -> Any:
        message = await bot.send_message(4005, "analysing")
        sandbox.inject_fault("editMessageText", count=1, kind="drop")
        sandbox.inject_fault("editMessageText", count=1, kind="5xx")
        try:
            return await bot.edit_message_text("the result", chat_id=4005, message_id=message.message_id)
        except BadRequest as error:  # the lost first edit did take effect
            return error.message

    outcome = run(bot, work=work)
    assert sent_texts(sandbox, 4005) == ["the result"]
    assert "not modified" in str(outcome)


def test_a_bad_request_is_not_repeated(sandbox: SandboxUser, redis_url: str, key_prefix: str) -> None:
    bot = a_process(sandbox, redis_url, key_prefix, "bot")
    before = len(sandbox.calls("editMessageText"))
    with pytest.raises(BadRequest):
        run(bot, work=lambda: bot.edit_message_text("x", chat_id=4006, message_id=987654))
    assert len(sandbox.calls("editMessageText")) == before + 1


def test_messages_to_one_chat_are_spaced_by_the_shared_budget(
    sandbox: SandboxUser, redis_url: str, key_prefix: str
) -> None:
    first, second = (a_process(sandbox, redis_url, key_prefix, name) for name in ("bot", "worker"))

    async def work() -> None:
        sends = [bot.send_message(4007, f"message {n}") for n, bot in enumerate([first, second] * 3)]
        await asyncio.gather(*sends)

    run(first, second, work=work)
    times = sorted(c["time"] for c in sandbox.calls("sendMessage") if int(c["parameters"]["chat_id"]) == 4007)
    assert len(times) == 6
    # A burst of three, then one a second, whichever process sends: the sixth leaves 3 s after the first.
    assert times[5] - times[0] >= 3.0 - 0.05


def test_a_message_may_take_the_slot_of_the_one_that_must_follow_it(
    sandbox: SandboxUser, redis_url: str, key_prefix: str
) -> None:
    """A clinician alert's album takes its text's slot too: the text then goes at once, and another album, which
    needs two slots of the three a chat has at once, waits; a single message still takes the last slot."""
    worker = a_process(sandbox, redis_url, key_prefix, "worker")
    limiter = worker.rate_limiter
    assert isinstance(limiter, TelegramCallLimiter)
    limiter.max_wait_s = 0.2

    async def work() -> None:
        with limiter.charging_chat(2):
            await worker.send_message(4011, "album")
        with limiter.charging_chat(0):
            await worker.send_message(4011, "its text")
        with limiter.charging_chat(2), pytest.raises(WaitTooLong):
            await worker.send_message(4011, "another album")
        await worker.send_message(4011, "a single message")

    run(worker, work=work)
    assert sent_texts(sandbox, 4011) == ["album", "its text", "a single message"]
    with pytest.raises(ValueError), limiter.charging_chat(4):
        pass  # more than a chat's burst could never be taken


def test_asking_how_long_a_chat_would_wait_takes_nothing(sandbox: SandboxUser, redis_url: str, key_prefix: str) -> None:
    worker = a_process(sandbox, redis_url, key_prefix, "worker")
    limiter = worker.rate_limiter
    assert isinstance(limiter, TelegramCallLimiter)
    limiter.max_wait_s = 0.2

    async def work() -> tuple[list[float], float]:
        asked = [await limiter.chat_wait_s(4012, 3) for _ in range(4)]
        with limiter.charging_chat(3):  # the chat's whole burst: only there if asking took none of it
            await worker.send_message(4012, "three at once")
        return asked, await limiter.chat_wait_s(4012)

    asked, after = run(worker, work=work)
    assert asked == [0.0] * 4
    assert sent_texts(sandbox, 4012) == ["three at once"]
    assert 0.5 < after <= 1.0, "the next message waits for the chat's next slot, a second after"


def test_a_worker_never_blocks_longer_than_its_limit_and_is_told_how_long_to_wait(
    sandbox: SandboxUser, redis_url: str, key_prefix: str
) -> None:
    bot, worker = (a_process(sandbox, redis_url, key_prefix, name) for name in ("bot", "worker"))
    assert isinstance(worker.rate_limiter, TelegramCallLimiter)
    worker.rate_limiter.max_wait_s = 1.0
    sandbox.inject_fault("sendMessage", count=1, retry_after=4)
    before = len(sandbox.calls("sendChatAction"))

    async def work() -> None:
        told = asyncio.create_task(bot.send_message(4009, "told to wait 4 s"))
        await asyncio.to_thread(
            wait_until, lambda: [c for c in sandbox.calls("sendMessage") if c.get("fault") == "429"], 20, what="429"
        )
        await asyncio.sleep(0.5)
        with pytest.raises(WaitTooLong) as waited:
            await worker.send_chat_action(4010, "typing")
        assert 2 <= retry_after_seconds(waited.value) <= 4
        await told

    run(bot, worker, work=work)
    assert len(sandbox.calls("sendChatAction")) == before, "the worker's call waits for its retry, not in the queue"


def test_without_redis_the_calls_still_go_out(sandbox: SandboxUser) -> None:
    limiter = TelegramCallLimiter(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", key_prefix="", chat_hash_key="k", process="bot"
    )
    bot: ExtBot[None] = ExtBot(
        TOKEN, base_url=f"{sandbox.api_url}/bot", request=telegram_request(), rate_limiter=limiter
    )
    sandbox.inject_fault("sendMessage", count=1, retry_after=1)
    run(bot, work=lambda: bot.send_message(4008, "no redis"))
    assert sent_texts(sandbox, 4008) == ["no redis"]
