"""Which of the bot's handlers an update reaches (bot/handlers.py), checked on PTB's own update objects."""

from __future__ import annotations

from datetime import UTC, datetime

from telegram import CallbackQuery, Chat, Message, PhotoSize, Update, User
from telegram.ext import Application

from bot.handlers import register_handlers
from shared.clinic.buttons import ClinicianAllowList
from shared.config import Settings

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
    register_handlers(application, ClinicianAllowList.from_settings(Settings()))
    chat, patient = Chat(PATIENT, Chat.PRIVATE), User(PATIENT, "Patient", is_bot=False)
    photo = Message(
        7, datetime.now(UTC), chat, from_user=patient, photo=(PhotoSize("file", "unique", 640, 480),), caption="arm"
    )
    text = Message(8, datetime.now(UTC), chat, from_user=patient, text="hello")
    for message in (photo, text):
        assert handlers_taking(application, Update(1, edited_message=message)) == []
    assert "on_photo" in handlers_taking(application, Update(2, message=photo))
    assert "on_unsupported" in handlers_taking(application, Update(3, message=text))


def first_handler_per_group(application: Application, update: Update) -> dict[int, str]:  # type: ignore[type-arg]
    """What PTB runs: in each group, the first handler that takes the update."""
    taken: dict[int, str] = {}
    for group, handlers in sorted(application.handlers.items()):
        chosen = next((h for h in handlers if h.check_update(update)), None)
        if chosen is not None:
            taken[group] = getattr(chosen.callback, "__name__", "?")
    return taken


def test_a_group_chat_never_reaches_the_patients_handlers_and_a_private_chat_does() -> None:
    """A group is not one patient (bot/private_chats.py): its messages and button presses stop at the pointer to
    a private chat, before the consent gate, the patients' commands and the buttons' handlers."""
    application = Application.builder().token("123:sandbox").build()
    register_handlers(application, ClinicianAllowList.from_settings(Settings()))
    member = User(PATIENT, "Member", is_bot=False)
    for chat in (Chat(-100123, Chat.SUPERGROUP), Chat(-123, Chat.GROUP)):
        for text in ("hello", "/start", "/privacy", "/delete"):
            message = Message(9, datetime.now(UTC), chat, from_user=member, text=text)
            taken = first_handler_per_group(application, Update(4, message=message))
            assert taken.get(-1) == "on_shared_chat", (chat.type, text, taken)
        under = Message(10, datetime.now(UTC), chat, from_user=member, text="a pointer")
        press = CallbackQuery("1", member, "instance", message=under, data=f"q|{'0' * 32}|age|40-49")
        assert first_handler_per_group(application, Update(5, callback_query=press)).get(-1) == "on_shared_chat"
    private = Message(11, datetime.now(UTC), Chat(PATIENT, Chat.PRIVATE), from_user=member, text="hello")
    assert first_handler_per_group(application, Update(6, message=private)).get(-1) == "consent_gate"
