"""Which of the bot's handlers an update reaches (bot/handlers.py), checked on PTB's own update objects."""

from __future__ import annotations

from datetime import UTC, datetime

from telegram import Chat, Message, PhotoSize, Update, User
from telegram.ext import Application

from bot.handlers import register_handlers

PATIENT = 4242


def handlers_taking(application: Application, update: Update) -> list[str]:  # type: ignore[type-arg]
    return [
        getattr(handler.callback, "__name__", "?")
        for group in application.handlers.values()
        for handler in group
        if handler.check_update(update)
    ]


def test_an_edited_message_starts_nothing_and_a_new_one_is_handled() -> None:
    """Correcting a photo's caption or a typo is not a new photo (a new job, questionnaire and hourly slot)
    nor a new message to answer."""
    application = Application.builder().token("123:sandbox").build()
    register_handlers(application)
    chat, patient = Chat(PATIENT, Chat.PRIVATE), User(PATIENT, "Patient", is_bot=False)
    photo = Message(
        7, datetime.now(UTC), chat, from_user=patient, photo=(PhotoSize("file", "unique", 640, 480),), caption="arm"
    )
    text = Message(8, datetime.now(UTC), chat, from_user=patient, text="hello")
    for message in (photo, text):
        assert handlers_taking(application, Update(1, edited_message=message)) == []
    assert "on_photo" in handlers_taking(application, Update(2, message=photo))
    assert "on_unsupported" in handlers_taking(application, Update(3, message=text))
