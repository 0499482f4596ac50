"""Patients are served in a private chat only (bot/private_chats.py), end to end on the real stack: a group chat
that is not a clinician chat gets one pointer to a private chat, no consent question, no analysis and no row;
a clinician group keeps working.

Chats: -1005001 a patients' group (members 5101 and 5102); -1005002 a clinician group where 5201 is a clinician.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from shared.audit import Consent, InboundUpdate, Job, PatientProfile, chat_reference
from shared.texts import clinician as clinician_texts
from shared.texts import patient as patient_texts
from tests.auxil.services import wait_until
from tests.auxil.stack import CHAT_HASH_KEY, RunningStack, running_stack

pytestmark = pytest.mark.e2e

GROUP, MEMBER, OTHER_MEMBER = -1005001, 5101, 5102
CLINICIAN_GROUP, GROUP_CLINICIAN = -1005002, 5201


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("private-chats")
    with running_stack(
        redis_url,
        f"sqlite:///{log_dir / 'audit.sqlite3'}",
        log_dir,
        clinician_chat_ids=f"9001,{CLINICIAN_GROUP}",
        clinician_user_ids=str(GROUP_CLINICIAN),
    ) as running:
        yield running


def answer_to_press(stack: RunningStack, query: dict[str, Any]) -> str:
    """What the bot answered to a press (answerCallbackQuery's text)."""

    def find() -> str | None:
        for call in stack.user.calls("answerCallbackQuery"):
            if str(call["parameters"].get("callback_query_id")) == query["id"]:
                return str(call["parameters"].get("text") or "")
        return None

    return wait_until(find, 30, what="the answer to the press")


def all_handled(stack: RunningStack) -> bool:
    """Every update the bot received is handled (bot/durable_updates.py marks it processed)."""
    with Session(stack.engine) as session:
        updates = list(session.exec(select(InboundUpdate)).all())
    return bool(updates) and all(update.processed_at is not None for update in updates)


def test_a_group_chat_gets_one_pointer_to_a_private_chat_and_nothing_is_analysed_or_stored(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    first = stack.user.send_text(GROUP, "/start", from_id=MEMBER)
    pointer = wait_until(
        lambda: next((m for m in stack.user.bot_messages(GROUP) if m["message_id"] > first["message_id"]), None),
        30,
        what="the bot's answer in the group",
    )
    assert pointer["text"] == patient_texts.PRIVATE_CHAT_ONLY
    assert pointer.get("reply_markup") is None, "no consent buttons in a group"

    # More members, more messages (a photo, commands): not answered again within the hour, nothing analysed.
    photo = stack.user.send_photo(GROUP, photos_by_risk["alert"].read_bytes())
    for text, member in (("hello", OTHER_MEMBER), ("/privacy", OTHER_MEMBER), ("/delete", MEMBER)):
        stack.user.send_text(GROUP, text, from_id=member)
    stack.user.send_text(GROUP, "/history", from_id=OTHER_MEMBER)
    wait_until(lambda: all_handled(stack), 30, what="the bot to handle the group's messages")
    time.sleep(1.0)  # a photo wrongly taken would be downloading by now
    assert [m["text"] for m in stack.user.bot_messages(GROUP)] == [patient_texts.PRIVATE_CHAT_ONLY], "told once"

    # A forged press in the group (the bot never puts patients' buttons there): answered, nothing recorded.
    agree = stack.user.forge_callback(GROUP, pointer["message_id"], f"consent|agree|{patient_texts.PRIVACY_VERSION}")
    assert answer_to_press(stack, agree) == patient_texts.PRIVATE_CHAT_ONLY_PRESS
    assert stack.user.bot_messages(GROUP) == [pointer]

    chat_ref = chat_reference(GROUP, CHAT_HASH_KEY)
    with Session(stack.engine) as session:
        assert not session.exec(select(Job)).all(), "no job of any chat"
        assert not session.exec(select(Consent).where(Consent.chat_ref == chat_ref)).all()
        assert not session.exec(select(PatientProfile).where(PatientProfile.chat_ref == chat_ref)).all()
    file_id = photo["photo"][-1]["file_id"]
    assert not [c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == file_id]


def test_a_clinician_group_keeps_working(stack: RunningStack) -> None:
    command = stack.user.send_text(CLINICIAN_GROUP, "/pending", from_id=GROUP_CLINICIAN)

    def answer() -> dict[str, Any] | None:
        bot = [m for m in stack.user.bot_messages(CLINICIAN_GROUP) if m["message_id"] > command["message_id"]]
        return bot[0] if bot else None

    reply = wait_until(answer, 30, what="the answer to /pending")
    assert reply["text"] == clinician_texts.NOTHING_PENDING
    chatter = stack.user.send_text(CLINICIAN_GROUP, "anyone seen the new alert?", from_id=GROUP_CLINICIAN)
    wait_until(lambda: all_handled(stack), 30, what="the bot to handle the clinicians' message")
    assert not [m for m in stack.user.bot_messages(CLINICIAN_GROUP) if m["message_id"] > chatter["message_id"]]
    assert patient_texts.PRIVATE_CHAT_ONLY not in [m["text"] for m in stack.user.bot_messages(CLINICIAN_GROUP)]
