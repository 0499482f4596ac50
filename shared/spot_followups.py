"""The same spot over time: a patient who asked to be reminded to photograph a spot again (bot/spots.py), the
reminder beat sends when it is due (worker/reminders.py), and the new photo sent in reply to it, which the worker
compares with the earlier one (worker/flow.py, models/serving/spot_change.py).

When a reminder is due: LOW results after SKINSENSE_REMINDER_AFTER_LOW_DAYS, MEDIUM ones (the patient was told to
see a doctor within weeks) after SKINSENSE_REMINDER_AFTER_MEDIUM_DAYS; HIGH results go to the clinicians and get
none. Telegram gives no time zone, so a reminder is due at the same time of day as the patient asked for it: an
hour they were awake and using SkinSense (the sweep runs every minute or so).

Sending is claimed per row (a conditional UPDATE), so two beats or two workers never send one reminder twice; a
send that fails is released for the next sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.audit import Job, SpotFollowup, utc_now
from shared.labels import RiskLevel
from shared.sealing import Sealer, get_sealer

# Buttons (bot/spots.py answers them): under a result, ask for a reminder; under a reminder or in /reminders, stop.
CALLBACK_PATTERN = r"^spot\|"
REMIND_CALLBACK = "spot|remind|"  # + the result's job id (hex)
STOP_CALLBACK = "spot|stop|"  # + the reminder's id (hex), or "all"
SENDING_TIMEOUT = timedelta(minutes=10)  # a claim older than this without a message id was lost with its sender


class FollowupContact(BaseModel):
    """Sealed on the row: where to send the reminder, and the earlier photo to compare with."""

    chat_id: int
    file_id: str


@dataclass(frozen=True)
class DueReminder:
    followup: SpotFollowup
    contact: FollowupContact


def reminder_delay(risk: RiskLevel, *, after_low_days: float, after_medium_days: float) -> timedelta | None:
    """How long after a result its reminder is due; None for a HIGH result (the clinicians follow it up)."""
    if risk == RiskLevel.LOW:
        return timedelta(days=after_low_days)
    if risk == RiskLevel.MEDIUM:
        return timedelta(days=after_medium_days)
    return None


class SpotFollowupStore:
    def __init__(self, engine: Engine, sealer: Sealer | None = None) -> None:
        self._engine = engine
        self._sealer = sealer or get_sealer()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session:
            yield session

    def create(self, chat_ref: str, job_id: uuid.UUID, contact: FollowupContact, remind_at: datetime) -> SpotFollowup:
        """A reminder for this result; one per result (asking again replaces the earlier one)."""
        with self._session() as session:
            session.exec(
                update(SpotFollowup)
                .where(col(SpotFollowup.job_id) == job_id, col(SpotFollowup.stopped_at).is_(None))
                .values(stopped_at=utc_now())
            )
            row = SpotFollowup(chat_ref=chat_ref, job_id=job_id, sealed=self._sealer.seal(contact), remind_at=remind_at)
            session.add(row)
            session.commit()
            return row

    def active(self, chat_ref: str) -> list[SpotFollowup]:
        """The patient's reminders not stopped (due or sent and not yet answered), soonest first."""
        with self._session() as session:
            statement = (
                select(SpotFollowup)
                .where(col(SpotFollowup.chat_ref) == chat_ref, col(SpotFollowup.stopped_at).is_(None))
                .order_by(col(SpotFollowup.remind_at))
            )
            return list(session.exec(statement).all())

    def stop(self, chat_ref: str, followup_id: uuid.UUID | None = None) -> int:
        """Stop one of the patient's reminders (None: all of them); how many were stopped."""
        with self._session() as session:
            statement = update(SpotFollowup).where(
                col(SpotFollowup.chat_ref) == chat_ref, col(SpotFollowup.stopped_at).is_(None)
            )
            if followup_id is not None:
                statement = statement.where(col(SpotFollowup.id) == followup_id)
            stopped = session.exec(statement.values(stopped_at=utc_now()))
            session.commit()
            return int(stopped.rowcount)

    def claim_due(self, limit: int = 50) -> list[DueReminder]:
        """Reminders due and not sent, each claimed by this caller only (a claim lost with its sender is taken
        again after SENDING_TIMEOUT)."""
        now = utc_now()
        sendable = (
            col(SpotFollowup.stopped_at).is_(None)
            & (col(SpotFollowup.remind_at) <= now)
            & col(SpotFollowup.prompt_message_id).is_(None)
        )
        unclaimed = col(SpotFollowup.reminded_at).is_(None) | (col(SpotFollowup.reminded_at) < now - SENDING_TIMEOUT)
        claimed: list[DueReminder] = []
        with self._session() as session:
            due = session.exec(select(SpotFollowup).where(sendable, unclaimed).limit(limit)).all()
            for row in due:
                won = session.exec(
                    update(SpotFollowup)
                    .where(col(SpotFollowup.id) == row.id, sendable, unclaimed)
                    .values(reminded_at=now)
                )
                session.commit()
                if won.rowcount == 1:
                    claimed.append(DueReminder(row, self._sealer.unseal(row.sealed, FollowupContact)))
        return claimed

    def reminded(self, followup_id: uuid.UUID, message_id: int) -> None:
        """The reminder went out as ``message_id``: a photo sent in reply to it is a new photo of the spot."""
        self._set(followup_id, prompt_message_id=message_id)

    def release(self, followup_id: uuid.UUID) -> None:
        """The reminder could not be sent now: the next sweep tries again."""
        self._set(followup_id, reminded_at=None)

    def for_reply(self, chat_ref: str, message_id: int) -> DueReminder | None:
        """The patient's reminder whose message ``message_id`` is (a photo sent in reply to it), if still open."""
        with self._session() as session:
            row = session.exec(
                select(SpotFollowup).where(
                    col(SpotFollowup.chat_ref) == chat_ref,
                    col(SpotFollowup.prompt_message_id) == message_id,
                    col(SpotFollowup.stopped_at).is_(None),
                )
            ).first()
        return None if row is None else DueReminder(row, self._sealer.unseal(row.sealed, FollowupContact))

    def answered(self, followup_id: uuid.UUID) -> None:
        """The new photo came: this reminder is done (the patient may ask for the next one after its result)."""
        self._set(followup_id, stopped_at=utc_now())

    def _set(self, followup_id: uuid.UUID, **values: object) -> None:
        with self._session() as session:
            session.exec(update(SpotFollowup).where(col(SpotFollowup.id) == followup_id).values(**values))
            session.commit()


@dataclass(frozen=True)
class ReminderFigures:
    """For `skinsense audit performance`: reminders asked for and sent in a period, and the new photos they
    brought (a photo sent in reply to a reminder), compared and found changed or not."""

    asked: int
    sent: int
    new_photos: int
    changed: int
    no_clear_change: int
    not_comparable: int
    changes: dict[str, int]  # by models.serving.spot_change.SpotChangeKind value


def reminder_figures(engine: Engine, since: datetime | None = None, until: datetime | None = None) -> ReminderFigures:
    with Session(engine) as session:
        reminders = select(SpotFollowup)
        photos = select(Job).where(col(Job.same_spot_as).is_not(None))
        if since is not None:
            reminders = reminders.where(col(SpotFollowup.created_at) >= since)
            photos = photos.where(col(Job.received_at) >= since)
        if until is not None:
            reminders = reminders.where(col(SpotFollowup.created_at) < until)
            photos = photos.where(col(Job.received_at) < until)
        asked = session.exec(reminders).all()
        brought = session.exec(photos).all()
    compared = [job.spot_change for job in brought if job.spot_change and job.spot_change.get("comparable")]
    changes: dict[str, int] = {}
    for change in compared:
        for kind in change.get("changes", []):
            changes[kind] = changes.get(kind, 0) + 1
    changed = sum(1 for change in compared if change.get("changes"))
    return ReminderFigures(
        asked=len(asked),
        sent=sum(1 for row in asked if row.prompt_message_id is not None),
        new_photos=len(brought),
        changed=changed,
        no_clear_change=len(compared) - changed,
        not_comparable=len(brought) - len(compared),
        changes=changes,
    )


def erase_patient_followups(session: Session, chat_ref: str) -> int:
    """/delete: the patient's reminders and what they hold (the chat and the earlier photo's file id) go."""
    return int(session.exec(delete(SpotFollowup).where(col(SpotFollowup.chat_ref) == chat_ref)).rowcount)


def purge_followups(session: Session, cutoff: datetime) -> int:
    """Retention: reminders created before the cutoff go, like the results they point to."""
    return int(session.exec(delete(SpotFollowup).where(col(SpotFollowup.created_at) < cutoff)).rowcount)
