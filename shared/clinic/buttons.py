"""The alert's buttons and who may press them: callback data, keyboards, the clinicians' allow-list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.audit import (
    AlertState,
    ClinicianActionKind,
)
from shared.clinic.views import AlertView
from shared.config import Settings
from shared.labels import MelanomaFinding, melanoma_finding

CALLBACK_PREFIX = "clin"


CALLBACK_PATTERN = rf"^{CALLBACK_PREFIX}\|"


@dataclass(frozen=True)
class ClinicianAllowList:
    """Clinician chats, and in group chats the clinicians' user ids (settings). The lead chat counts too."""

    chat_ids: frozenset[int]
    user_ids: frozenset[int]

    @classmethod
    def from_settings(cls, settings: Settings) -> ClinicianAllowList:
        chats = set(settings.clinician_chat_ids)
        if settings.clinician_lead_chat_id is not None:
            chats.add(settings.clinician_lead_chat_id)
        return cls(frozenset(chats), frozenset(settings.clinician_user_ids))

    def is_clinician_chat(self, chat_id: int) -> bool:
        return chat_id in self.chat_ids

    def allows(self, chat_id: int, user_id: int | None, *, private: bool) -> bool:
        """A private clinician chat is the clinician (its id is theirs); in a group or supergroup only the listed
        user ids count, whatever the chat's id."""
        if chat_id not in self.chat_ids or user_id is None:
            return False
        return user_id == chat_id if private else user_id in self.user_ids


def parse_callback(data: str) -> tuple[ClinicianActionKind, uuid.UUID] | None:
    """``clin|<action>|<alert id>``; None for anything else (forged data included)."""
    parts = data.split("|")
    if len(parts) != 3 or parts[0] != CALLBACK_PREFIX:
        return None
    try:
        return ClinicianActionKind(parts[1]), uuid.UUID(parts[2])
    except ValueError:
        return None


def callback_data(action: ClinicianActionKind, thread_id: uuid.UUID) -> str:
    return f"{CALLBACK_PREFIX}|{action.value}|{thread_id}"


def alert_keyboard(view: AlertView) -> Any:
    """The buttons under a thread's alert, by its state (none once resolved; a thread's later photos have none:
    the thread is acted on as one); "Write to the patient" under every unresolved one. Returns a PTB
    InlineKeyboardMarkup, or None."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    from shared.texts import clinician as clinician_texts

    if view.state == AlertState.RESOLVED:
        return None

    def button(action: ClinicianActionKind) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            clinician_texts.CLINICIAN_BUTTONS[action.value], callback_data=callback_data(action, view.thread_id)
        )

    rows = [[button(ClinicianActionKind.CLAIM)]] if view.state == AlertState.OPEN else []
    rows.append([button(ClinicianActionKind.NO_ACTION)])
    if view.state == AlertState.AWAITING_PHOTO:  # asked already: it waits for the photo, or is resolved
        rows.append([button(ClinicianActionKind.APPOINTMENT)])
    else:
        rows.append([button(ClinicianActionKind.APPOINTMENT), button(ClinicianActionKind.BETTER_PHOTO)])
    rows.append([button(ClinicianActionKind.WRITE)])  # the clinician's own words: resolves nothing
    return InlineKeyboardMarkup(rows)


def confirm_keyboard(thread_id: uuid.UUID) -> Any:
    """ "Yes, close it" / "Cancel", in place of a melanoma alert's buttons after "Reviewed: no action needed"."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    from shared.texts import clinician as clinician_texts

    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    clinician_texts.CLINICIAN_CONFIRM_BUTTONS[action.value],
                    callback_data=callback_data(action, thread_id),
                )
                for action in (ClinicianActionKind.CONFIRM_NO_ACTION, ClinicianActionKind.CANCEL)
            ]
        ]
    )


def needs_confirmation(view: AlertView) -> bool:
    """A melanoma alert (likely, or cannot be ruled out) is not closed with no action in one tap."""
    return melanoma_finding(view.melanoma_alert, view.ranking[0]["code"]) != MelanomaFinding.NONE
