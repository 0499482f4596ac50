"""Albums: the photos a patient sends together (one Telegram media_group_id) are one album. It gets one
"analysing..." message, no questionnaire (its questions are about one spot; asked per photo they would come N
times, so an album's results are photo-only, and the intake closes its questions at once), and one reply for
all its photos, from the worker that finishes the last one (worker/flow.py), plus a picture per photo.

Telegram delivers an album as separate updates, possibly handled at the same time: the first to arrive sends
the "analysing..." message; the others wait for it (a future in ``bot_data``) and share its id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from telegram import Message

from bot.state import bot_data_bucket
from shared.texts import result as result_texts

ALBUM_MEMORY_S = 3600.0  # an album's photos all arrive within seconds; its entry is forgotten after this


@dataclass
class Album:
    album_id: str  # on each of its jobs (shared.audit.Job.album_id): random, never the media_group_id
    first: bool  # this photo is the album's first: it sends the "analysing..." message
    status: asyncio.Future[Message] = field(repr=False)
    started: float = field(default_factory=time.monotonic)

    async def status_message(self, message: Message) -> Message:
        """The album's "analysing..." message: sent by its first photo, shared by the others."""
        if not self.first:
            return await asyncio.shield(self.status)
        try:
            sent = await message.reply_text(result_texts.ANALYSING_ALBUM, do_quote=True)
        except Exception as error:
            self.status.set_exception(error)
            raise
        self.status.set_result(sent)
        return sent


def albums(bot_data: dict[Any, Any]) -> dict[tuple[int, str], Album]:
    """(chat id, media group id) -> the album its photos join."""
    return bot_data_bucket(bot_data, "albums")


def join_album(message: Message, bot_data: dict[object, object]) -> Album | None:
    """The album this photo belongs to (None when it was sent on its own)."""
    if message.media_group_id is None:
        return None
    registry = albums(bot_data)
    now = time.monotonic()
    for key in [key for key, album in registry.items() if now - album.started > ALBUM_MEMORY_S]:
        del registry[key]
    key = (message.chat_id, message.media_group_id)
    known = registry.get(key)
    if known is not None:
        return Album(known.album_id, first=False, status=known.status, started=known.started)
    album = Album(uuid.uuid4().hex, first=True, status=asyncio.get_running_loop().create_future())
    registry[key] = album
    return album
