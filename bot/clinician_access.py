"""Who may act as a clinician, and what happens to anyone else: each refused press or command answered and
counted, at most one recorded per chat and sender in an interval (the audit log cannot be flooded)."""

from __future__ import annotations

import asyncio
import logging
import re
import time as clock
import uuid

from telegram import Chat, Update, User
from telegram.ext import (
    ApplicationHandlerStop,
)

from bot.context import BotContext
from shared.audit import ClinicianActionKind
from shared.clinic.buttons import (
    ClinicianAllowList,
)
from shared.clinic.views import CASE_COMMAND
from shared.metrics import CLINICIAN_REFUSED
from shared.texts import clinician as clinician_texts

log = logging.getLogger(__name__)


CLINICIAN_COMMANDS = ("pending", "case", "stats")


# /case_3f2a9c41 (Telegram makes a one-word command tappable; "/case <id>" sends a bare "/case" when tapped)
CASE_SHORTCUT = re.compile(rf"^/{CASE_COMMAND}_([0-9a-fA-F]{{6,27}})(?:@\w+)?\s*$")


# Refused presses and commands: each counted, at most one recorded per chat (and kind) in this interval.
REFUSAL_SAMPLE_INTERVAL_S = 600.0


REFUSALS_TRACKED = 10_000  # chats remembered for the sampling, before the oldest are forgotten


def is_clinician(chat: Chat, user: User | None, allow_list: ClinicianAllowList) -> bool:
    """In a private chat the chat is the user; in a group only the listed users count."""
    return user is not None and allow_list.allows(chat.id, user.id, private=chat.type == Chat.PRIVATE)


def clinician_name(user: User) -> str:
    """How the others see who took an alert: the clinician's Telegram name (and @username when there is one)."""
    return f"{user.full_name} (@{user.username})" if user.username else user.full_name


def _refusal_sampled(
    recorded: dict[tuple[str, int, int | None], float], what: str, chat_id: int, sender_id: int | None
) -> bool:
    """Whether this refusal is the one recorded for its chat and sender in the sampling interval (``recorded``:
    (press or command, chat id, sender id) -> when a refusal there was last recorded, monotonic seconds)."""
    now = clock.monotonic()
    last = recorded.get((what, chat_id, sender_id))
    if last is not None and now - last < REFUSAL_SAMPLE_INTERVAL_S:
        return False
    if len(recorded) >= REFUSALS_TRACKED:
        for key in [k for k, at in recorded.items() if now - at >= REFUSAL_SAMPLE_INTERVAL_S]:
            del recorded[key]
        while len(recorded) >= REFUSALS_TRACKED:
            del recorded[next(iter(recorded))]
    recorded[(what, chat_id, sender_id)] = now
    return True


async def refuse(
    context: BotContext,
    what: str,
    chat: Chat,
    user: User | None,
    action: str,
    alert_id: uuid.UUID | None = None,
) -> bool:
    """Count a refused press or command; record it when sampled (a known action name or "unknown", a patient's
    chat by its reference only if they consented). True when sampled: the refusal that may be answered with a
    message (the others are not, so that a flood never spends the clinicians' chat allowance their alerts need)."""
    CLINICIAN_REFUSED.labels(what=what).inc()
    if not _refusal_sampled(context.bot_data.refusals_recorded, what, chat.id, None if user is None else user.id):
        log.debug("clinician %s refused (not recorded: sampled)", what)
        return False
    clinician_chat = context.bot_data.services.clinicians.is_clinician_chat(chat.id)
    await asyncio.to_thread(
        context.bot_data.services.alerts.record_refusal,
        alert_id=alert_id,
        action=action,
        clinician_chat_id=chat.id if clinician_chat else None,
        patient_chat_ref=None if clinician_chat else context.bot_data.services.chat_ref(chat.id),
        user_id=None if user is None else user.id,
    )
    log.warning(
        "clinician %s refused: not an allow-listed clinician (%s chat); more refusals in this chat within %d min "
        "are only counted",
        what,
        chat.type,
        REFUSAL_SAMPLE_INTERVAL_S // 60,
    )
    return True


def press_name(data: str) -> str:
    """The action a press asked for, as recorded: a known action, or "unknown" (never the sender's own text)."""
    parts = data.split("|")
    if len(parts) >= 2 and parts[1] in {kind.value for kind in ClinicianActionKind}:
        return parts[1]
    return "unknown"


def command_name(text: str) -> str:
    """The command a message asked for, as recorded: /pending, /case, /stats, or "unknown"."""
    word = text.split()[0] if text.split() else ""
    name = word.removeprefix("/").split("@")[0].lower()
    if CASE_SHORTCUT.match(word):
        name = CASE_COMMAND
    return f"/{name}" if name in CLINICIAN_COMMANDS else "unknown"


async def on_clinician_chat_message(update: Update, context: BotContext) -> None:
    """Anything else in a clinician chat: the commands, in a private chat; silence in a group (clinicians talk
    to each other there) and for an edited message. Never the patients' consent gate."""
    chat, message = update.effective_chat, update.message
    if chat is not None and message is not None and chat.type == Chat.PRIVATE:
        await message.reply_text(clinician_texts.CLINICIAN_HELP)
    raise ApplicationHandlerStop
