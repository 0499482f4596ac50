"""Sending clinician alerts from the outbox (shared/clinic/store.py), exactly once per clinician chat where
Telegram allows it, and the closed loop's periodic sweep.

An alert is the patient's photo (its caption names the patient's pseudonym) with, as a reply under it, the text
that carries the details and the buttons; a later photo of the same patient within the hour is sent as a reply
to the thread's first alert, without buttons, and the first alert's text is edited to list it.

Exactly once: each (alert, chat, kind) delivery records its attempt before the Telegram call and the message
id after it. When a call's outcome is unknown (a timeout, a lost response, a process that died mid-call) the
next attempt goes out marked "this may repeat a message that already reached you" instead of as a silent
duplicate; when Telegram refused the call (429, 400, 403) nothing arrived and the next attempt is a plain one.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from models.serving.inference import Classifier
from shared.audit import AlertDeliveryKind, AlertState, ClinicianAlert, MediaKind
from shared.clinic.buttons import alert_keyboard
from shared.clinic.calendar import WorkingCalendar
from shared.clinic.refresh import alert_edits
from shared.clinic.store import AlertStore, SealedPhoto, unsealed_photo
from shared.clinic.views import AlertView, Attempt
from shared.images import MAX_FILE_BYTES
from shared.labels import PhotoKind
from shared.metrics import CLINICIAN_DELIVERIES_GIVEN_UP, timed
from shared.telegram_calls import NotDelivered, WaitTooLong, is_not_modified
from shared.texts import clinician as clinician_texts
from worker.telegram import TelegramClient, is_transient

log = logging.getLogger(__name__)
# A delivery Telegram keeps refusing (the bot was removed from the chat, a chat id that does not exist) is
# given up after this many refusals (or worker processes that died sending it), logged and counted, rather than
# tried by every sweep forever. Passing trouble (flood control, the network, Telegram's 5xx) never counts.
MAX_DELIVERY_ATTEMPTS = 8
# An alert never waits in a worker process for Telegram's budgets (one message a second per chat): its task
# retries when Telegram will take it, and the process goes back to the patients (a burst of alerts never holds
# their answers up; a wait of a second per message held both processes of a 2-process worker).
ALERT_MAX_WAIT_S = 0.0


def outcome_known(error: BaseException) -> bool:
    """Nothing was sent: Telegram refused the call (flood control, a bad request, a forbidden chat) or it never
    reached Telegram (shared.telegram_calls.NotDelivered). Anything else (a lost answer, a timeout) may have
    been executed."""
    return isinstance(error, RetryAfter | BadRequest | Forbidden | NotDelivered)


@dataclass(frozen=True)
class SweepReport:
    reminded: int
    escalated: int
    queued: int
    secrets_erased: int


@dataclass(frozen=True)
class ClinicianAlertSender:
    telegram: TelegramClient
    alerts: AlertStore
    clinician_chat_ids: Sequence[int]
    lead_chat_id: int | None = None
    # The explanation picture of a photo (models/serving/explain.py, with this worker's model); None: photo alone.
    explain: Callable[[AlertView, bytes], bytes | None] | None = None
    # How long a delivery may wait here for Telegram's budgets before its task retries later (ALERT_MAX_WAIT_S;
    # a caller with nothing else to do, such as a test, may wait longer).
    max_wait_s: float = ALERT_MAX_WAIT_S
    # This process's explanation pictures by alert: drawn once, uploaded once, then sent again by file id.
    _pictures: dict[uuid.UUID, str | bytes] = field(default_factory=dict, repr=False)

    def notify_clinicians(self, job_id: uuid.UUID) -> int:
        """Make this job's alert's missing deliveries; returns how many were made now. A transient failure in
        one chat is raised once the other chats are served (the task retries; what was sent stays sent); one
        Telegram refused (a chat the bot left) is logged and tried again by the sweep, up to a bound."""
        alert = self.alerts.for_job(job_id)
        if alert is None or alert.sent_at is not None:
            return 0
        view = self.alerts.view(alert.id)
        if view is None:
            return 0  # the job was erased in between
        root = alert if view.is_root else self.alerts.load(alert.thread_id)
        wanted = self._wanted(alert, root or alert, view)
        deliveries = self.alerts.deliveries([alert.id])
        done = {(d.chat_id, d.kind) for d in deliveries if d.message_id is not None}
        given_up = {
            (d.chat_id, d.kind) for d in deliveries if d.message_id is None and d.attempts >= MAX_DELIVERY_ATTEMPTS
        }
        made = 0
        retry: TelegramError | None = None
        with self.telegram.limiter.waiting_at_most(self.max_wait_s):
            for chat_id, kind in wanted:
                if (chat_id, kind) in done:
                    continue
                if (chat_id, kind) in given_up:
                    log.error(
                        "alert %s: %s to a clinician chat given up after %d attempts",
                        alert.id,
                        kind.value,
                        MAX_DELIVERY_ATTEMPTS,
                    )
                    continue
                wait_s = self.telegram.chat_wait_s(chat_id, _messages_first_taken(kind, view))
                if wait_s > self.max_wait_s:
                    # Asked before recording the attempt: under a burst of alerts most tries are told to wait,
                    # and each would otherwise write the attempt and take it back.
                    retry = retry or WaitTooLong(max(1, math.ceil(wait_s)))
                    continue
                attempt = self.alerts.begin_attempt(alert.id, chat_id, kind)
                if attempt is None:
                    continue  # sent meanwhile, or another process is sending it right now
                try:
                    self._deliver(attempt, alert, view)
                    made += 1
                except TelegramError as error:  # one chat's trouble never holds back the others
                    if is_transient(error):
                        retry = retry or error
        if retry is not None:
            raise retry  # the task retries the rest; a chat Telegram refused waits for the sweep
        finished = {  # sent, or given up (logged): either way nothing more to do for it
            (d.chat_id, d.kind)
            for d in self.alerts.deliveries([alert.id])
            if d.message_id is not None or d.attempts >= MAX_DELIVERY_ATTEMPTS
        }
        if all(key in finished for key in wanted):
            self.alerts.mark_sent(alert.id)
            self._pictures.pop(alert.id, None)
        if not view.is_root:
            self.refresh_thread(view.thread_id)  # the first alert lists the thread's photos
        return made

    def _wanted(
        self, alert: ClinicianAlert, root: ClinicianAlert, view: AlertView
    ) -> list[tuple[int, AlertDeliveryKind]]:
        if not alert.forwarded:
            return []  # over the per-patient limit: listed in the thread's first alert, not sent
        wanted = [(chat_id, AlertDeliveryKind.ALERT) for chat_id in self.clinician_chat_ids]
        if view.is_root and root.reminded_at is not None and root.state == AlertState.OPEN:
            wanted += [(chat_id, AlertDeliveryKind.REMINDER) for chat_id in self.clinician_chat_ids]
        if view.is_root and root.escalated_at is not None and root.state != AlertState.RESOLVED and self.lead_chat_id:
            wanted.append((self.lead_chat_id, AlertDeliveryKind.ESCALATION))
        return wanted

    def _deliver(self, attempt: Attempt, alert: ClinicianAlert, view: AlertView) -> None:
        photo = unsealed_photo(alert)
        thread_message = None if view.is_root else self._thread_message(view.thread_id, attempt.chat_id)
        if attempt.kind == AlertDeliveryKind.REMINDER:
            # The chat has the photo already: the reminder (with the buttons) answers the alert it repeats.
            photo, thread_message = None, self._thread_message(view.thread_id, attempt.chat_id)
        limiter = self.telegram.limiter
        first_call_slots = _messages_first_taken(attempt.kind, view)
        try:
            photo_message_id = attempt.photo_message_id
            text_prepaid = photo_not_attached = False
            if photo_message_id is None and photo is not None:
                try:
                    photo_message_id = self._send_photo(attempt, alert, view, photo, thread_message, first_call_slots)
                except BadRequest as error:
                    # Telegram refused the photo (a file it no longer has): the alert goes out as its text alone,
                    # saying so, rather than not at all.
                    log.warning("alert %s: photo refused (%s); sending the text alone", alert.id, error.message)
                    photo_not_attached = True
                else:
                    text_prepaid = first_call_slots > 1  # the photo took its text's slot
                    self.alerts.record_photo_sent(attempt, photo_message_id)
            if view.is_root or photo_message_id is None:
                text = clinician_texts.clinician_alert(
                    view,
                    kind=attempt.kind.value,
                    possibly_repeated=attempt.possibly_repeated,
                    photo_not_attached=photo_not_attached,
                )
                keyboard = alert_keyboard(view) if view.is_root else None
                with limiter.charging_chat(0 if text_prepaid else 1):
                    message_id = self.telegram.send_text(
                        attempt.chat_id, text, reply_markup=keyboard, reply_to=photo_message_id or thread_message
                    )
            else:
                message_id = photo_message_id  # a thread's later photo: its caption is the message
        except WaitTooLong:
            self.alerts.record_not_tried(attempt)  # our own budget said wait: nothing was sent, nothing counts
            raise
        except TelegramError as error:
            known, refused = outcome_known(error), not is_transient(error)
            self.alerts.record_failed(attempt, outcome_known=known, refused=refused)
            log.warning(
                "alert %s: %s to a clinician chat failed (%s; %s)",
                alert.id,
                attempt.kind.value,
                type(error).__name__,
                "not sent" if known else "outcome unknown",
            )
            if refused and attempt.attempts >= MAX_DELIVERY_ATTEMPTS:
                CLINICIAN_DELIVERIES_GIVEN_UP.inc()
            raise
        self.alerts.record_sent(attempt, message_id)
        log.info(
            "alert %s: %s sent to a clinician chat%s",
            alert.id,
            attempt.kind.value,
            " (marked as a possible repeat)" if attempt.possibly_repeated else "",
        )

    def _send_photo(
        self,
        attempt: Attempt,
        alert: ClinicianAlert,
        view: AlertView,
        photo: SealedPhoto,
        thread_message: int | None,
        slots: int,
    ) -> int:
        """The alert's photo (with its explanation picture, as one album, for a thread's first alert), taking
        ``slots`` of the chat's budget; returns the photo's message id."""
        picture = self._explanation(alert.id, view, photo) if view.is_root else None
        caption = clinician_texts.clinician_photo_caption(
            view, kind=attempt.kind.value, possibly_repeated=attempt.possibly_repeated, with_picture=picture is not None
        )
        as_document = photo.media_kind == MediaKind.DOCUMENT
        # The photo takes its text's slot of the chat's budget too: under a burst of alerts to one chat, each
        # alert then goes out whole, instead of albums taking every slot while their texts wait.
        with self.telegram.limiter.charging_chat(slots):
            if picture is not None:  # one album: the patient's photo, and where the model looked
                album = self.telegram.send_album(
                    attempt.chat_id, [photo.file_id, picture], caption, as_documents=as_document
                )
                self._pictures[alert.id] = album[1][1] or picture
                return album[0][0]
            send = self.telegram.send_document if as_document else self.telegram.send_photo
            return send(attempt.chat_id, photo.file_id, caption, reply_to=thread_message)

    def _explanation(self, alert_id: uuid.UUID, view: AlertView, photo: SealedPhoto) -> str | bytes | None:
        """The alert's explanation picture: its file id once uploaded, else drawn now (None if it cannot be:
        the alert goes out with the photo alone, never later for want of a picture)."""
        if alert_id in self._pictures:
            return self._pictures[alert_id]
        if self.explain is None:
            return None
        try:
            data = self.telegram.download_file(photo.file_id, MAX_FILE_BYTES)
            picture = self.explain(view, data)
        except WaitTooLong:
            raise  # Telegram's pause: the alert waits for it whole, picture included
        except Exception as error:  # a photo Telegram no longer has, a model that cannot draw it
            log.warning("alert %s: no explanation picture (%s)", alert_id, type(error).__name__)
            return None
        if picture is not None:
            self._pictures[alert_id] = picture
        return picture

    def _thread_message(self, thread_id: uuid.UUID, chat_id: int) -> int | None:
        for delivery in self.alerts.deliveries([thread_id]):
            if delivery.chat_id == chat_id and delivery.kind == AlertDeliveryKind.ALERT:
                return delivery.message_id
        return None

    def refresh_thread(self, thread_id: uuid.UUID) -> int:
        """Edit the thread's alert text in every chat that has it to its current state; returns the edits made.
        Best effort: an edit that fails is logged (the next change edits again)."""
        edited = 0
        for edit in alert_edits(self.alerts, thread_id):
            try:
                self.telegram.edit_text(edit.chat_id, edit.message_id, edit.text, reply_markup=edit.keyboard)
                edited += 1
            except BadRequest as error:
                if not is_not_modified(error):
                    log.warning("alert %s: edit failed (%s)", thread_id, error.message)
            except TelegramError as error:
                log.warning("alert %s: edit failed (%s)", thread_id, type(error).__name__)
        return edited


def _messages_first_taken(kind: AlertDeliveryKind, view: AlertView) -> int:
    """The slots of its chat's budget a delivery's first call takes: a root alert's photo (or album) takes the
    slot of the text with the buttons that follows it too; a reminder is one text; a thread's later photo is
    one message."""
    return 2 if view.is_root and kind != AlertDeliveryKind.REMINDER else 1


def explanation_for_clinicians(classifier: Classifier, view: AlertView, photo: bytes) -> bytes | None:
    """The explanation picture the patient got (models/serving/explain.py), drawn for the alert."""
    from models.serving.explain import explanation_picture

    if view.photo_kind is None:
        return None
    with timed("explanation"):
        return explanation_picture(photo, classifier, view.ranking, PhotoKind(view.photo_kind))


@dataclass(frozen=True)
class ClinicianAlertSweep:
    """Beat's periodic work, safe if it runs twice: mark reminders and escalations that are due (each once),
    erase secrets of resolved threads, and queue every alert with deliveries still to make."""

    alerts: AlertStore
    calendar: WorkingCalendar
    claim_within_hours: float
    resolve_within_days: float
    lead_chat_id: int | None
    queue_alert: Callable[[uuid.UUID], None]  # by job id

    def run(self) -> SweepReport:
        reminded = self.alerts.mark_reminders_due(self.calendar, self.claim_within_hours)
        escalated = (
            self.alerts.mark_escalations_due(self.calendar, self.resolve_within_days)
            if self.lead_chat_id is not None
            else []
        )
        erased = self.alerts.erase_resolved_secrets()
        unsent = self.alerts.unsent_jobs()
        for job_id in unsent:
            self.queue_alert(job_id)
        if reminded or escalated or unsent:
            log.info(
                "clinician sweep: %d reminded, %d escalated, %d alert(s) queued",
                len(reminded),
                len(escalated),
                len(unsent),
            )
        return SweepReport(len(reminded), len(escalated), len(unsent), erased)
