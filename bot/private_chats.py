"""Patients are served in a private chat only. A group chat is not one patient: any member could agree or erase
for all of them, and every member would read the others' results. So a group, supergroup or channel that is not
a clinician chat (bot/clinician_commands.py, handled before this) gets nothing of the patients' side: no consent
question, no analysis, no row. A new message there is answered with one polite pointer to a private chat, at
most once an hour per chat (members who keep writing are not answered each time); a button pressed there (a
forged one: the bot never sends patients' buttons to a group) is answered with the same pointer, changing
nothing. Channels are left in silence: a post there would go to every subscriber.

Registered first in group -1, before the consent gate and the patients' commands (bot/handlers.py).
"""

from __future__ import annotations

import contextlib
import logging
import time

from telegram import Chat, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop, BaseHandler

from bot.context import BotContext
from shared.metrics import PRESSES_REFUSED, SHARED_CHAT_MESSAGES
from shared.texts import patient as patient_texts

log = logging.getLogger(__name__)
TELL_AT_MOST_EVERY_S = 3600.0
# Callback data prefixes of the patients' buttons, for the refused presses' metric (a fixed set of words).
BUTTONS_BY_PREFIX = {"q": "questionnaire", "consent": "consent", "delete": "delete", "history": "history"}


class SharedChatHandler(BaseHandler[Update, BotContext, None]):
    """Every update from a chat that is not private and not one of the clinician chats."""

    def __init__(self, clinician_chat_ids: frozenset[int]) -> None:
        super().__init__(on_shared_chat)
        self.clinician_chat_ids = clinician_chat_ids

    def check_update(self, update: object) -> bool:
        if not isinstance(update, Update):
            return False
        chat = update.effective_chat
        return chat is not None and chat.type != Chat.PRIVATE and chat.id not in self.clinician_chat_ids


def may_tell(told: dict[int, float], chat_id: int, now: float) -> bool:
    """Whether this chat is due the pointer (not told within the hour); if so, it counts as told from now
    (``told``: chat id -> when, time.monotonic, it was last told; in memory only). No await between the check
    and the mark: two messages handled at once are answered once."""
    for stale in [chat for chat, at in told.items() if now - at >= TELL_AT_MOST_EVERY_S]:
        del told[stale]
    if chat_id in told:
        return False
    told[chat_id] = now
    return True


async def on_shared_chat(update: Update, context: BotContext) -> None:
    chat, query, message = update.effective_chat, update.callback_query, update.message
    assert chat is not None  # SharedChatHandler.check_update
    if query is not None:
        prefix = (query.data or "").split("|", 1)[0]
        PRESSES_REFUSED.labels(buttons=BUTTONS_BY_PREFIX.get(prefix, "other"), why="not_private").inc()
        log.info("button press refused: a %s chat is not a patient's private chat", chat.type)
        with contextlib.suppress(BadRequest):  # too old to answer (a replayed update)
            await query.answer(text=patient_texts.PRIVATE_CHAT_ONLY_PRESS)
    elif message is not None and chat.type != Chat.CHANNEL:  # a new message (an edited one starts nothing)
        if may_tell(context.bot_data.group_chats_told, chat.id, time.monotonic()):
            SHARED_CHAT_MESSAGES.labels(reply="told").inc()
            log.info("a %s chat told to use a private chat", chat.type)
            try:
                await message.reply_text(patient_texts.PRIVATE_CHAT_ONLY, do_quote=True)
            except TelegramError:
                context.bot_data.group_chats_told.pop(chat.id, None)  # not told: the update's retry may tell it
                raise
        else:
            SHARED_CHAT_MESSAGES.labels(reply="silent").inc()
    raise ApplicationHandlerStop
