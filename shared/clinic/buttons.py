"""The alert's buttons and who may press them: callback data, keyboards, the clinicians' allow-list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.audit import (
    AlertState,
    ClinicalFinding,
    ClinicianActionKind,
    Referral,
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


@dataclass(frozen=True)
class Press:
    """A clinician's press, read from its callback data."""

    action: ClinicianActionKind
    thread_id: uuid.UUID
    choice: ClinicalFinding | Referral | None = None  # a conclusion (CONCLUDE) or a referral (REFER)


def parse_callback(data: str) -> Press | None:
    """``clin|<action>|<alert id>`` (``|<choice>`` for a conclusion or a referral); None for anything else (forged
    data included)."""
    parts = data.split("|")
    if len(parts) not in (3, 4) or parts[0] != CALLBACK_PREFIX:
        return None
    try:
        action, thread_id = ClinicianActionKind(parts[1]), uuid.UUID(parts[2])
        choice: ClinicalFinding | Referral | None = None
        if action == ClinicianActionKind.CONCLUDE:
            choice = ClinicalFinding(parts[3])
        elif action == ClinicianActionKind.REFER:
            choice = Referral(parts[3])
        elif len(parts) == 4:
            return None
    except (ValueError, IndexError):
        return None
    return Press(action, thread_id, choice)


def callback_data(action: ClinicianActionKind, thread_id: uuid.UUID, choice: str | None = None) -> str:
    return f"{CALLBACK_PREFIX}|{action.value}|{thread_id}" + ("" if choice is None else f"|{choice}")


def outcome_keyboard(view: AlertView) -> Any:
    """Under a resolved alert, for the clinic's figures (skinsense audit performance): first what the clinician
    concludes it is, then whether they referred; nothing once both are recorded. A PTB InlineKeyboardMarkup or None."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    from shared.texts import clinician as clinician_texts

    if view.conclusion is None:
        action, labels = ClinicianActionKind.CONCLUDE, clinician_texts.CONCLUSION_BUTTONS
    elif view.referral is None:
        action, labels = ClinicianActionKind.REFER, clinician_texts.REFERRAL_BUTTONS
    else:
        return None
    buttons = [
        InlineKeyboardButton(label, callback_data=callback_data(action, view.thread_id, choice))
        for choice, label in labels.items()
    ]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


def alert_keyboard(view: AlertView) -> Any:
    """The buttons under a thread's alert, by its state (once resolved, the conclusion's and then the referral's,
    under the root: ``outcome_keyboard``; a thread's later photos have none: the thread is acted on as one);
    "Write to the patient" under every unresolved one. Returns a PTB InlineKeyboardMarkup, or None."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    from shared.texts import clinician as clinician_texts

    if view.state == AlertState.RESOLVED:
        return outcome_keyboard(view) if view.is_root else None

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
