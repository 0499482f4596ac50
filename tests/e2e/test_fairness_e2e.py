"""Fair to every chat, on the real stack (sandbox, bot process, redis-server, a Celery worker, SQLite): one chat
flooding the bot gets one notice and no more answers past its allowance, and never holds up the other chats
(bot/fairness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from shared.audit import InboundUpdate
from shared.texts import patient as patient_texts
from tests.auxil.patient import consent
from tests.auxil.services import wait_until
from tests.auxil.stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e
UPDATES_PER_MINUTE = 20  # the stack's allowance per chat


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("fairness")
    with running_stack(
        redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, updates_per_chat_per_minute=UPDATES_PER_MINUTE
    ) as running:
        yield running


def sends_to(stack: RunningStack, chat: int) -> list[dict[str, Any]]:
    """The bot's sendMessage calls to ``chat`` that Telegram took, in order, with their times."""
    return [
        call
        for call in stack.user.calls("sendMessage")
        if call["parameters"].get("chat_id") in (chat, str(chat)) and not call.get("fault")
    ]


def all_updates_handled(stack: RunningStack) -> bool:
    with Session(stack.engine) as session:
        return all(row.processed_at is not None for row in session.exec(select(InboundUpdate)))


def test_a_chat_flooding_texts_gets_one_notice_and_never_holds_up_the_other_chats(stack: RunningStack) -> None:
    flooder, others = 7001, [7002, 7003, 7004, 7005, 7006]
    for chat in [flooder, *others]:
        consent(stack.user, chat)  # two updates each: /start and the tap
    before = len(sends_to(stack, flooder))
    for number in range(80):
        stack.user.send_text(flooder, f"is it bad? {number}")
    for chat in others:
        stack.user.send_text(chat, "/about")
    wait_until(
        lambda: all(stack.user.bot_messages(chat)[-1].get("text", "").startswith("About") for chat in others),
        60,
        what="the other chats' answers",
    )
    answered_at = [sends_to(stack, chat)[-1]["time"] for chat in others]

    wait_until(lambda: all_updates_handled(stack), 120, what="every update of the flood handled or dropped")
    flood = sends_to(stack, flooder)[before:]
    texts = [call["parameters"].get("text") for call in flood]
    admitted = UPDATES_PER_MINUTE - 2  # the consent took two
    assert texts.count(patient_texts.NOT_A_PHOTO_TEXT) == admitted, texts
    assert texts.count(patient_texts.TOO_MANY_UPDATES) == 1, "one notice for the whole flood"
    assert len(texts) == admitted + 1, "nothing else answered"
    # The flood's own answers go out at its chat's pace (about one a second): the other chats were answered
    # before its tenth, not behind it.
    tenth = flood[9]["time"]
    assert all(moment < tenth for moment in answered_at), (answered_at, tenth)
