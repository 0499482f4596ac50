"""What the bot keeps in memory between updates, in ``bot_data`` (never in module globals), typed.

Nothing here is written to disk: a photo sent before consent is held only as its Telegram message (its
file id, no image bytes) until the patient answers the privacy question, and is forgotten on "No thanks",
/delete or a restart; a questionnaire in progress lives here until it closes (its answers are also saved on
the job row at each tap, so a restart loses only the buttons; the worker's timeout still answers the patient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from telegram import Message

MAX_PENDING_PHOTOS = 10  # per chat, before consent (an album is at most 10)


def bot_data_bucket(bot_data: dict[Any, Any], name: str) -> dict[Any, Any]:
    return cast(dict[Any, Any], bot_data.setdefault(name, {}))


@dataclass(frozen=True)
class HeldPhoto:
    """A photo (or file) that arrived before the patient consented."""

    message: Message
    # The update that brought it: taking the photo again (the consent tap handled again after a failure) finds
    # the job recorded the first time (bot/intake.take_image is idempotent by update key), never a second one.
    update_key: str


def pending_photos(bot_data: dict[Any, Any]) -> dict[int, list[HeldPhoto]]:
    """chat id -> the photos held until the patient decides."""
    return bot_data_bucket(bot_data, "pending_photos")
