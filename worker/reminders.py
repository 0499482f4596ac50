"""Patients' reminders to photograph a spot again (shared/spot_followups.py), sent by beat's sweep when due:
each claimed once, sent with a "Stop reminders" button, and the sent message's id recorded, so that a photo sent
in reply to it is compared with the earlier one. A send Telegram refuses for now is released for the next sweep;
one refused for good (the patient blocked the bot) stops the reminder."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import Forbidden, TelegramError

from shared.audit import Job
from shared.job_store import JobStore
from shared.spot_followups import STOP_CALLBACK, SpotFollowupStore
from shared.texts import patient as patient_texts
from worker.telegram import TelegramClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReminderSender:
    telegram: TelegramClient
    followups: SpotFollowupStore
    jobs: JobStore

    def send_due(self) -> int:
        """Every reminder due now, once; how many went out."""
        sent = 0
        for due in self.followups.claim_due():
            earlier: Job | None = self.jobs.load(due.followup.job_id)
            if earlier is None:  # the result was erased meanwhile: nothing to compare with
                self.followups.stop(due.followup.chat_ref, due.followup.id)
                continue
            stop = InlineKeyboardButton(
                patient_texts.REMINDER_STOP_BUTTON, callback_data=f"{STOP_CALLBACK}{due.followup.id.hex}"
            )
            try:
                message_id = self.telegram.send_text(
                    due.contact.chat_id,
                    patient_texts.reminder(earlier.received_at),
                    reply_markup=InlineKeyboardMarkup([[stop]]),
                )
            except Forbidden:  # the patient blocked the bot: no more reminders
                self.followups.stop(due.followup.chat_ref, due.followup.id)
                continue
            except TelegramError as error:
                log.warning("reminder %s not sent (%s); next sweep", due.followup.id, type(error).__name__)
                self.followups.release(due.followup.id)
                continue
            self.followups.reminded(due.followup.id, message_id)
            sent += 1
        return sent
