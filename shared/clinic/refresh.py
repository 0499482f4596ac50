"""One plan for bringing an alert's messages up to date, for the bot (after a press) and the worker (after a
sweep or a new photo in the thread): every message that shows the thread's alert, with the text and buttons of
its current state. Each side carries the edits out with its own Telegram client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.audit import AlertDeliveryKind
from shared.clinic.buttons import alert_keyboard
from shared.clinic.store import AlertStore
from shared.texts import clinician as clinician_texts


@dataclass(frozen=True)
class AlertEdit:
    chat_id: int
    message_id: int
    text: str  # Telegram HTML
    keyboard: Any  # InlineKeyboardMarkup


def alert_edits(store: AlertStore, thread_id: uuid.UUID, also: tuple[int, int] | None = None) -> list[AlertEdit]:
    """The edits that show the thread's current state in every clinician chat that has its alert (and its
    latest /case copies), and in ``also`` (chat id, message id: a pressed /case copy that is none of those)."""
    view = store.view(thread_id)
    if view is None:
        return []
    targets = [
        (delivery.chat_id, delivery.message_id, delivery.kind.value, delivery.possibly_repeated)
        for delivery in store.deliveries([thread_id])
        if delivery.message_id is not None
    ]
    if also is not None and all((chat_id, message_id) != also for chat_id, message_id, _, _ in targets):
        targets.append((*also, AlertDeliveryKind.CASE.value, False))
    keyboard = alert_keyboard(view)
    return [
        AlertEdit(
            chat_id, message_id, clinician_texts.clinician_alert(view, kind=kind, possibly_repeated=repeated), keyboard
        )
        for chat_id, message_id, kind, repeated in targets
    ]
