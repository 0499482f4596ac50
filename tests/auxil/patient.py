"""A patient's side of the conversation, played through the sandbox: consent, then photos and the questionnaire."""

from __future__ import annotations

from typing import Any

from shared import messages
from skinsense.sandbox import plain_text
from tests.auxil.sandbox_user import SandboxUser, button_data
from tests.auxil.services import wait_until

CONSENTED_TEXTS = (messages.CONSENT_GIVEN, messages.CONSENT_GIVEN_PHOTO_PENDING)


def consent(user: SandboxUser, chat_id: int) -> None:
    """Agree to the privacy text (once per chat: nothing happens if this chat already agreed)."""
    if any(m.get("text") in CONSENTED_TEXTS for m in user.bot_messages(chat_id)):
        return
    sent = user.send_text(chat_id, "/start")
    prompt = user.wait_for_button(chat_id, messages.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])
    user.tap(chat_id, prompt["message_id"], messages.CONSENT_AGREE_BUTTON)
    user.wait_for_text(chat_id, prompt["message_id"], messages.CONSENT_GIVEN)


def questionnaire_for(user: SandboxUser, chat_id: int, photo_message_id: int) -> dict[str, Any]:
    """The questionnaire the bot sends about a photo: the message with a "Skip" button that replies to it."""

    def find() -> dict[str, Any] | None:
        for message in user.bot_messages(chat_id):
            replies_to = message.get("reply_to_message", {}).get("message_id")
            if replies_to == photo_message_id and button_data(message, messages.SKIP_BUTTON) is not None:
                return message
        return None

    return wait_until(find, 60, what=f"the questionnaire about photo {photo_message_id} in chat {chat_id}")


def skip_questionnaire(user: SandboxUser, chat_id: int, photo_message_id: int) -> None:
    questions = questionnaire_for(user, chat_id, photo_message_id)
    user.tap(chat_id, questions["message_id"], messages.SKIP_BUTTON)
    user.wait_for_text(chat_id, questions["message_id"], plain_text(messages.QUESTIONNAIRE_SKIPPED, "HTML"))


def send_photo_skipping_questions(user: SandboxUser, chat_id: int, data: bytes, **query: str) -> dict[str, Any]:
    """What most tests need: consent (once), send the photo, skip its questionnaire; returns the photo message."""
    consent(user, chat_id)
    sent = user.send_photo(chat_id, data, **query)
    skip_questionnaire(user, chat_id, sent["message_id"])
    return sent


def answer_questionnaire(user: SandboxUser, chat_id: int, photo_message_id: int, labels: list[str]) -> dict[str, Any]:
    """Tap one button per question, in order (each tap waits for the next question or the end); returns the
    questionnaire message as it reads afterwards."""
    questions = questionnaire_for(user, chat_id, photo_message_id)
    for label in labels:
        current = next(m for m in user.bot_messages(chat_id) if m["message_id"] == questions["message_id"])
        user.tap(chat_id, questions["message_id"], label)
        before = current.get("text")

        def moved_on(message_id: int = questions["message_id"], before: Any = before) -> bool:
            message = next(m for m in user.bot_messages(chat_id) if m["message_id"] == message_id)
            return bool(message.get("text") != before)

        wait_until(moved_on, 30, what=f"the questionnaire to move on after {label!r}")
    return next(m for m in user.bot_messages(chat_id) if m["message_id"] == questions["message_id"])


def erase_everything(user: SandboxUser, chat_id: int, jobs: int) -> None:
    """/delete, then "Erase everything"; waits for the confirmation that ``jobs`` analyses were erased."""
    command = user.send_text(chat_id, "/delete")
    question = user.wait_for_button(chat_id, messages.DELETE_CONFIRM_BUTTON, after_id=command["message_id"])
    user.tap(chat_id, question["message_id"], messages.DELETE_CONFIRM_BUTTON)
    user.wait_for_text(chat_id, question["message_id"], messages.DELETED.format(jobs=jobs))
