"""Fair to every chat: one chat's flood never holds up the others.

Two mechanisms, both before any handler:

- ``FairUpdateProcessor`` (PTB's update processor): the updates of one chat are handled one at a time, in the
  order they came, and at most ``WORKING_UPDATES`` updates of different chats run at once. A chat's later updates
  wait for its turn *outside* those slots (PTB's own semaphore is set far higher), so a handler waiting for its
  chat's sending allowance (about a message a second in a private chat, one per 3 s in a group) holds one slot
  at most, never the slots other chats need. It also keeps a chat's messages in order (a photo, then "I agree").
  Presses on buttons have slots of their own: answering one sends no message (it waits for no sending
  allowance), and Telegram refuses an answer after about 15 s, so a burst of photos waiting for the bot's
  overall allowance must not keep presses waiting.
- ``admission_gate`` (handler group -3): at most ``updates_per_chat_per_minute`` updates of any kind (texts,
  commands, presses, photos) from one private chat, or one member of a group, in any rolling minute (counted in
  Redis, shared by every bot process). Past that the chat gets one polite notice a minute (a group member: none,
  the group's own allowance is the clinicians' alerts') and its updates are dropped unanswered. Clinicians on the
  allow-list are not limited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, BaseHandler, BaseUpdateProcessor

from bot.clinician_access import is_clinician
from bot.context import BotContext, BotServices
from shared.metrics import UPDATES_DROPPED
from shared.texts import patient as patient_texts

log = logging.getLogger(__name__)

WORKING_UPDATES = 8  # updates of different chats handled at once
QUEUED_UPDATES = 100_000  # PTB's slots: a chat's updates wait for their turn here, holding none of the above


class FairUpdateProcessor(BaseUpdateProcessor):
    """One update at a time per chat, in order; ``working`` at once across chats (see the module)."""

    def __init__(self, working: int = WORKING_UPDATES) -> None:
        super().__init__(QUEUED_UPDATES)
        self._working = asyncio.Semaphore(working)
        self._pressing = asyncio.Semaphore(working)  # presses' own slots (see the module)
        self._chat_turns: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
        if chat is None:
            async with self._working:
                await coroutine
            return
        slots = self._pressing if isinstance(update, Update) and update.callback_query else self._working
        turn = self._chat_turns.setdefault(chat, asyncio.Lock())
        self._waiting[chat] = self._waiting.get(chat, 0) + 1
        try:
            async with turn, slots:
                await coroutine
        finally:
            self._waiting[chat] -= 1
            if not self._waiting[chat]:  # nothing more of this chat: its lock is forgotten
                del self._waiting[chat]
                del self._chat_turns[chat]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def sender_ref(update: Update, services: BotServices) -> str | None:
    """Who is counted: a private chat; in a group, the member (pseudonymous either way)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None:
        return None
    if chat.type == ChatType.PRIVATE or user is None:
        return services.chat_ref(chat.id)
    return f"{services.chat_ref(chat.id)}:{services.chat_ref(user.id)}"


class AdmissionHandler(BaseHandler[Update, BotContext, None]):
    """``admission_gate`` for every update that starts something: not edited messages, which start nothing
    (bot/handlers.py) and so cost nothing to let by."""

    def __init__(self) -> None:
        super().__init__(admission_gate)

    def check_update(self, update: object) -> bool:
        return isinstance(update, Update) and update.edited_message is None and update.edited_channel_post is None


async def admission_gate(update: Update, context: BotContext) -> None:
    """Past a chat's (or a group member's) allowance of updates a minute: one notice, then nothing (see the
    module); the update is recorded as handled, so it is never handled later either."""
    chat, user = update.effective_chat, update.effective_user
    services = context.bot_data.services
    ref = sender_ref(update, services)
    if chat is None or ref is None or is_clinician(chat, user, services.clinicians):
        return
    limit = services.update_limit
    if await asyncio.to_thread(limit.allow, ref):
        return
    UPDATES_DROPPED.labels(reason="chat_over_limit").inc()
    if chat.type == ChatType.PRIVATE and await asyncio.to_thread(limit.first_refusal, ref):
        log.info("a chat is over its limit of %d updates a minute: told once, the rest dropped", limit.limit)
        if update.callback_query is not None:
            await update.callback_query.answer(patient_texts.TOO_MANY_UPDATES, show_alert=True)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(patient_texts.TOO_MANY_UPDATES, do_quote=False)
    raise ApplicationHandlerStop
