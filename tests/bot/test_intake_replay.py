"""Photo intake (bot/intake.py) is idempotent by the Telegram update (its key): the same update handled again (the
durable update queue replays it after a crash) gives one job, one "Analysing..." message and one enqueue, going on from
where the first handling stopped. Run in this process with python-telegram-bot against the real sandbox, a
migrated SQLite audit database and the tests' own Redis (no worker: the queued message stays on the broker, where
the test reads it)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlmodel import Session, col, select
from telegram import Message
from telegram.ext import Application, CallbackContext, ContextTypes

from bot.context import BotData, BotServices
from bot.intake import take_image
from shared.audit import Job, JobStatus, MediaKind, chat_reference
from shared.config import get_settings
from shared.db import get_engine
from shared.job_store import Delivery, get_job_store
from shared.outcomes import FailureCode
from shared.queue import CLASSIFY_QUEUE, producer_app
from shared.sealing import get_sealer
from shared.texts import patient as patient_texts
from tests.auxil.database import migrated_engine
from tests.auxil.sandbox_user import SandboxUser, running_sandbox
from tests.auxil.services import free_port

TOKEN = "7373:intake-replay-token"
CHAT_HASH_KEY = "intake-replay-key"
CACHES = (
    get_settings,
    get_job_store,
    get_sealer,
    producer_app,
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxUser]:
    with running_sandbox(TOKEN, tmp_path_factory.mktemp("intake-sandbox")) as user:
        yield user


@pytest.fixture
def bot_settings(tmp_env: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Iterator[str]:
    """The bot's settings in this process: its own database and key prefix; the process-wide caches rebuilt."""
    database_url = f"sqlite:///{tmp_path / 'intake.sqlite3'}"
    migrated_engine(database_url)
    prefix = f"replay-{uuid.uuid4().hex[:8]}:"
    for name, value in {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHAT_HASH_KEY": CHAT_HASH_KEY,
    }.items():
        tmp_env.setenv(f"SKINSENSE_{name}", value)
    for cache in CACHES:
        cache.cache_clear()
    yield prefix
    for cache in CACHES:
        cache.cache_clear()


def run(sandbox: SandboxUser, work: Any) -> Any:
    """``work(context)`` with a python-telegram-bot application on the sandbox, as the bot's handlers get it."""

    async def main() -> Any:
        application = (
            Application.builder()
            .token(TOKEN)
            .base_url(f"{sandbox.api_url}/bot")
            .context_types(ContextTypes(bot_data=BotData))
            .build()
        )
        application.bot_data.use(services())
        async with application:
            return await work(CallbackContext(application))

    return asyncio.run(main())


def photo_message(
    sandbox: SandboxUser, chat: int, photo: bytes, context: CallbackContext[Any, Any, Any, Any]
) -> Message:
    sent = sandbox.send_photo(chat, photo)
    message = Message.de_json(sent, context.bot)
    assert message is not None
    return message


def services() -> BotServices:
    """The bot's services as bot/app.py builds them, on this test's settings."""
    return BotServices.build(get_settings())


def consented(chat: int) -> None:
    services().patients.record_consent(chat_reference(chat, CHAT_HASH_KEY), patient_texts.PRIVACY_VERSION)


def queued_requests(prefix: str) -> list[Any]:
    """The classify queue's messages on Redis, decoded: each task's arguments."""
    raw = redis.Redis.from_url(get_settings().redis_url).lrange(prefix + CLASSIFY_QUEUE, 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0] for m in raw]


def broker_messages_in_full(prefix: str) -> str:
    """Every message on the classify queue as Redis holds it, its base64 body decoded: headers (what Flower
    shows), properties and arguments."""
    raw = redis.Redis.from_url(get_settings().redis_url, decode_responses=True).lrange(prefix + CLASSIFY_QUEUE, 0, -1)
    return "\n".join(str(m) + base64.b64decode(json.loads(m)["body"]).decode() for m in raw)


def jobs_of(chat: int) -> list[Job]:
    with Session(get_engine()) as session:
        statement = select(Job).where(col(Job.chat_ref) == chat_reference(chat, CHAT_HASH_KEY))
        return list(session.exec(statement).all())


def test_the_same_update_twice_gives_one_job_one_analysing_message_one_enqueue(
    sandbox: SandboxUser, bot_settings: str, photos_by_risk: dict[str, Path]
) -> None:
    chat = 4_815_162_342
    consented(chat)

    async def handle_twice(context: CallbackContext[Any, Any, Any, Any]) -> Message:
        message = photo_message(sandbox, chat, photos_by_risk["low"].read_bytes(), context)
        await take_image(message, context, update_key="4242:9001:k")
        await take_image(message, context, update_key="4242:9001:k")  # the durable queue replays it
        return message

    message = run(sandbox, handle_twice)
    (job,) = jobs_of(chat)
    assert job.update_key == "4242:9001:k" and job.status == JobStatus.QUEUED and job.queued_at is not None
    analysing = [m for m in sandbox.bot_messages(chat) if m.get("text") == patient_texts.ANALYSING]
    assert len(analysing) == 1, "one 'Analysing...' message"
    assert queued_requests(bot_settings) == [[{"job_id": str(job.id)}]], "one enqueue, of the job id only"
    # The broker holds nothing about the chat; the database holds it sealed only.
    file_id = message.photo[-1].file_id
    broker_dump = broker_messages_in_full(bot_settings)
    assert str(chat) not in broker_dump and file_id not in broker_dump and str(job.id) in broker_dump
    with get_engine().connect() as connection:
        at_rest = repr(connection.execute(text("SELECT * FROM jobs")).all())
    assert str(chat) not in at_rest and file_id not in at_rest
    delivery = get_job_store().delivery_of(job)
    assert delivery is not None and delivery.questionnaire_message_id is not None
    assert delivery == Delivery(
        chat_id=chat,
        file_id=file_id,
        status_message_id=analysing[0]["message_id"],
        photo_message_id=message.message_id,
        questionnaire_message_id=delivery.questionnaire_message_id,
    )


def test_a_handling_that_stopped_after_the_row_goes_on_from_there(
    sandbox: SandboxUser, bot_settings: str, photos_by_risk: dict[str, Path]
) -> None:
    """The first handling recorded the job and died before "Analysing..." (or its enqueue): the replay sends it,
    and queues the job, once."""
    chat = 4_815_162_343
    consented(chat)

    async def crash_then_replay(context: CallbackContext[Any, Any, Any, Any]) -> None:
        message = photo_message(sandbox, chat, photos_by_risk["low"].read_bytes(), context)
        get_job_store().record_received(
            chat_ref=chat_reference(chat, CHAT_HASH_KEY),
            media_kind=MediaKind.PHOTO,
            file_unique_id=message.photo[-1].file_unique_id,
            delivery=Delivery(chat_id=chat, file_id=message.photo[-1].file_id),
            update_key="4242:9002:k",
        )
        await take_image(message, context, update_key="4242:9002:k")

    run(sandbox, crash_then_replay)
    (job,) = jobs_of(chat)
    assert [m["text"] for m in sandbox.bot_messages(chat)].count(patient_texts.ANALYSING) == 1
    assert queued_requests(bot_settings) == [[{"job_id": str(job.id)}]]


def test_a_job_row_that_cannot_be_written_raises_so_the_update_is_handled_again(
    sandbox: SandboxUser, bot_settings: str, photos_by_risk: dict[str, Path], tmp_env: pytest.MonkeyPatch
) -> None:
    chat = 4_815_162_344
    consented(chat)
    # The audit database goes away (a PostgreSQL no one listens for).
    tmp_env.setenv("SKINSENSE_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    for cache in CACHES:
        cache.cache_clear()

    async def handle(context: CallbackContext[Any, Any, Any, Any]) -> None:
        message = photo_message(sandbox, chat, photos_by_risk["low"].read_bytes(), context)
        await take_image(message, context, update_key="4242:9003:k")

    with pytest.raises(Exception) as raised:
        run(sandbox, handle)
    assert "OperationalError" in type(raised.value).__name__
    assert sandbox.bot_messages(chat) == [], "nothing said, nothing queued: the replay does it all"
    assert queued_requests(bot_settings) == []


def test_a_photo_past_the_consent_gate_when_no_thanks_was_handled_meanwhile_is_never_analysed(
    sandbox: SandboxUser, bot_settings: str, photos_by_risk: dict[str, Path]
) -> None:
    """Updates are handled concurrently: a photo passes the gate, then the patient's "No thanks" is handled
    (consent withdrawn, their queued photos closed) before this photo's row exists. Here: a chat whose consent
    is gone by the time ``take_image`` runs. The photo is closed as it comes in and queued all the same, so
    that the worker tells the patient it is not analysed (tests/worker/test_flow.py); no questions are asked."""
    chat = 4_815_162_345
    consented(chat)
    services().patients.withdraw_consent(chat_reference(chat, CHAT_HASH_KEY))

    async def handle(context: CallbackContext[Any, Any, Any, Any]) -> None:
        message = photo_message(sandbox, chat, photos_by_risk["low"].read_bytes(), context)
        await take_image(message, context, update_key="4242:9004:k")

    run(sandbox, handle)
    (job,) = jobs_of(chat)
    assert job.status == JobStatus.FAILED and job.error_code == FailureCode.CONSENT_WITHDRAWN
    assert job.ranking is None and job.queued_at is not None
    assert queued_requests(bot_settings) == [[{"job_id": str(job.id)}]]
    assert [m.get("text") for m in sandbox.bot_messages(chat)] == [patient_texts.ANALYSING], "no questionnaire"
