"""Albums: the photos a patient sends together (one Telegram media_group_id) are one album. It gets one
"analysing..." message, no questionnaire (its questions are about one spot; asked per photo they would come N
times, so an album's results are photo-only, and the intake closes its questions at once), and one reply for
all its photos, from the worker that finishes the last one (worker/flow.py), plus a picture per photo.

Telegram delivers an album as separate updates, possibly handled at the same time: the first to arrive sends
the "analysing..." message; the others wait for it (a future in ``bot_data``) and share its id.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from telegram import Message

from bot.state import Album

ALBUM_MEMORY_S = 3600.0  # an album's photos all arrive within seconds; its entry is forgotten after this


def album_id_of(chat_ref: str, media_group_id: str) -> str:
    """The same for every photo of one album, whichever process or bot replica takes it (a restart, a failover
    mid-album), and pseudonymous (the chat's reference is a keyed hash): never the media_group_id itself."""
    return hashlib.sha256(f"{chat_ref}:{media_group_id}".encode()).hexdigest()[:32]


def join_album(message: Message, chat_ref: str, registry: dict[tuple[int, str], Album]) -> Album | None:
    """The album this photo belongs to (None when it was sent on its own)."""
    if message.media_group_id is None:
        return None
    now = time.monotonic()
    for key in [key for key, album in registry.items() if now - album.started > ALBUM_MEMORY_S]:
        del registry[key]
    key = (message.chat_id, message.media_group_id)
    known = registry.get(key)
    if known is not None:
        return Album(known.album_id, first=False, status=known.status, started=known.started)
    album_id = album_id_of(chat_ref, message.media_group_id)
    album = Album(album_id, first=True, status=asyncio.get_running_loop().create_future())
    registry[key] = album
    return album
