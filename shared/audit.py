"""The audit trail: one row per job, holding what an auditor needs and nothing more.

No photo, no plain chat id and no message text is stored: the chat is a keyed hash (HMAC-SHA256 with
SKINSENSE_CHAT_HASH_KEY), the photo is its SHA-256 and Telegram's file_unique_id. What the workers need to
answer the patient (chat id, the "Analysing..." message, Telegram's file id) is kept sealed
(shared/sealing.py, SKINSENSE_DELIVERY_KEY) in ``delivery`` until the answer is delivered, then erased.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, String, Text, TypeDecorator
from sqlmodel import Field, SQLModel

from shared import clock
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import OutcomeCode, outcome_code


def utc_now() -> datetime:
    """Now, on the database's clock (shared/clock.py): every host stamps and compares on the same one."""
    return clock.now()


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"


class MediaKind(StrEnum):
    PHOTO = "photo"
    DOCUMENT = "document"


def chat_reference(chat_id: int, key: str) -> str:
    """Pseudonymous, stable reference to a chat: the same chat always maps to the same value."""
    return hmac.new(key.encode(), str(chat_id).encode(), hashlib.sha256).hexdigest()[:32]


class StoredEnum(TypeDecorator[StrEnum]):
    """A StrEnum stored as its plain string value (VARCHAR), read back as the enum member."""

    impl = String
    cache_ok = True

    def __init__(self, parse: Callable[[str], StrEnum], length: int) -> None:
        super().__init__(length)
        self._parse = parse

    def process_bind_param(self, value: StrEnum | None, dialect: Dialect) -> str | None:
        return None if value is None else self._parse(str(value)).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self._parse(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, always in UTC: SQLite keeps no time zone and reads back naive datetimes, PostgreSQL's
    ``timestamptz`` reads back the session's zone; either way the code gets an aware UTC datetime, and a naive
    one written is taken as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), **kwargs))


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chat_ref: str = Field(index=True, max_length=64)
    media_kind: MediaKind
    telegram_file_unique_id: str | None = Field(default=None, max_length=128)
    image_sha256: str | None = Field(default=None, max_length=64)
    status: JobStatus = Field(index=True)
    error_code: OutcomeCode | None = Field(default=None, sa_column=Column(StoredEnum(outcome_code, 64)))
    error_reason: str | None = Field(default=None, max_length=500)
    model_version: str | None = Field(default=None, max_length=64)
    ranking: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    risk: RiskLevel | None = Field(default=None, sa_column=Column(StoredEnum(RiskLevel, 16)))
    melanoma_alert: bool | None = None
    photo_kind: PhotoKind | None = Field(default=None, sa_column=Column(StoredEnum(PhotoKind, 16)))  # model's view
    delivery_attempts: int = 0
    received_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False, index=True))
    queued_at: datetime | None = _timestamp()
    started_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    replied_at: datetime | None = _timestamp()
    # {clinician chat id (staff, configured by the clinic): ISO time notified}
    clinicians_notified: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    # The questionnaire (health data, under the patient's consent; erased by /delete): the answers as
    # shared.answers.PatientAnswers fields (None: unknown), when the questionnaire closed (answered, skipped or
    # timed out), the photo-only ranking (``ranking`` is then the final one, photo and answers combined) and
    # which answers the final result used.
    answers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    answers_closed_at: datetime | None = _timestamp()
    photo_ranking: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    answers_used: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # What the patient read with the result, so /history shows it again as it was: which answers raised or
    # lowered the risk ({answer: shared.answers.AnswerEffect}; health data, erased with the answers), and the
    # measured reliability quoted for this photo kind (the artifact's malignant_told_low_per_100).
    answer_effects: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    malignant_told_low_per_100: float | None = None
    # The patient sent this photo before (same SHA-256): that job, whose result this one repeats.
    same_photo_as: uuid.UUID | None = None
    # The same spot over time (bot/spots.py): the earlier job this photo is a new photo of (sent in reply to a
    # reminder), and what the comparison found ({compared_with, comparable, reason, changes, ..., raised_risk}).
    same_spot_as: uuid.UUID | None = None
    spot_change: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # The skin tone around the lesion, estimated from the photo (models/serving/skin_tone.py; erased with the rest
    # of the patient data): its ITA in degrees (NULL: too little skin showed to tell), whether it lies outside the
    # tones SkinSense was measured on (the patient is told so), and whether that turned a LOW result into MEDIUM.
    skin_tone_ita: float | None = None
    skin_tone_caveat: bool | None = None
    raised_by_skin_tone: bool | None = None
    # A photo whose kind the picture head could not tell (models/serving/screening.py): what the other kind's network
    # found on the photo alone (its risk and melanoma alert), under which the result's risk never falls.
    other_kind_risk: RiskLevel | None = Field(default=None, sa_column=Column(StoredEnum(RiskLevel, 16)))
    other_kind_alert: bool | None = None
    # The photos sent together in one album share this (a random id the bot gives the album): one reply for all.
    album_id: str | None = Field(default=None, index=True, max_length=32)
    album_position: int | None = None  # orders an album's photos as sent (Telegram's message id: a counter)
    # Delivery (shared/job_store.py): the job row is the source of truth for answering the patient; the broker
    # carries job ids only. ``delivery``: shared.job_store.Delivery, sealed; NULL once the patient is answered.
    # ``update_key``: the Telegram update that brought the photo (bot/durable_updates.update_key: the bot, the
    # update id and the update's own content; intake is idempotent by it; NULL for rows from before).
    # ``due_at``: when the job's next step is overdue (the reconciler then queues it again, counting
    # ``requeues``); NULL once answered. ``slow_notice_at``: when the patient was told it takes longer than usual
    # (once).
    delivery: str | None = Field(default=None, sa_column=Column(Text))
    update_key: str | None = Field(default=None, sa_column=Column(String(96), index=True, unique=True))
    due_at: datetime | None = _timestamp(index=True)
    requeues: int = 0
    slow_notice_at: datetime | None = _timestamp()


class ConsentDecision(StrEnum):
    AGREED = "agreed"


class Consent(SQLModel, table=True):
    """A patient's explicit consent (GDPR Art. 9) to one version of the privacy text. A refusal stores nothing:
    no row is the proof that nothing was analysed."""

    __tablename__ = "consents"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chat_ref: str = Field(index=True, max_length=64)
    text_version: str = Field(max_length=32)
    decision: ConsentDecision = Field(sa_column=Column(StoredEnum(ConsentDecision, 16), nullable=False))
    decided_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))


class PatientProfile(SQLModel, table=True):
    """What the patient told us about themselves, remembered for their next photo (they can change it)."""

    __tablename__ = "patient_profiles"

    chat_ref: str = Field(primary_key=True, max_length=64)
    age_range: str | None = Field(default=None, max_length=8)  # shared.questionnaire.AgeRange
    sex: str | None = Field(default=None, max_length=8)  # shared.answers.Sex
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))


# --- Clinician alerts (shared/clinic/store.py) ------------------------------------------------------------------


class AlertState(StrEnum):
    """Where a high-risk alert stands with the clinicians: open, claimed by one of them, waiting for the better
    photo a clinician asked the patient for (still theirs, not resolved), or resolved. Legal moves: open ->
    claimed | awaiting_photo | resolved; claimed -> awaiting_photo | resolved; awaiting_photo -> resolved
    (shared.clinic.store.AlertStore: one conditional UPDATE each)."""

    OPEN = "open"
    CLAIMED = "claimed"
    AWAITING_PHOTO = "awaiting_photo"
    RESOLVED = "resolved"


class AlertResolution(StrEnum):
    NO_ACTION = "no_action"  # "Reviewed: no action needed"
    APPOINTMENT = "appointment"  # "Needs an appointment": the patient is told (consent permitting)
    BETTER_PHOTO = "better_photo"  # alerts from before AlertState.AWAITING_PHOTO: "Ask for a better photo" closed them


class ClinicalFinding(StrEnum):
    """What a clinician concluded from an alert, or what a biopsy found: HAM10000's seven types, squamous cell
    carcinoma, another diagnosis; and, for a clinician only, that the photo cannot tell."""

    AKIEC = "akiec"
    BCC = "bcc"
    BKL = "bkl"
    DF = "df"
    NV = "nv"
    MEL = "mel"
    VASC = "vasc"
    SCC = "scc"
    OTHER = "other"
    CANNOT_TELL = "cannot_tell"


# Cancer or pre-cancer: what counts as "suspicious confirmed" and as a positive biopsy (skinsense audit performance).
MALIGNANT_FINDINGS = frozenset({ClinicalFinding.MEL, ClinicalFinding.BCC, ClinicalFinding.AKIEC, ClinicalFinding.SCC})


class Referral(StrEnum):
    """What a clinician did about a resolved alert, beyond telling the patient."""

    BIOPSY = "biopsy"
    APPOINTMENT = "appointment"
    NONE = "none"


class ClinicianAlert(SQLModel, table=True):
    """The outbox row of one high-risk result, written in the same transaction as the result, and then the
    alert's life with the clinicians. Photos of one patient within an hour share a thread: the first alert is
    its root, which holds the thread's state (claim, resolution, reminder, escalation)."""

    __tablename__ = "clinician_alerts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    job_id: uuid.UUID = Field(unique=True)
    chat_ref: str = Field(index=True, max_length=64)  # the patient, pseudonymous (as on the job)
    thread_id: uuid.UUID = Field(index=True)  # the root alert's id (its own for a root)
    forwarded: bool = True  # False: over the per-patient forwarding limit, kept for /case but not sent
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False, index=True))
    # Sealed (shared/sealing.py), erased once the alert is resolved or the patient erased: the photo's Telegram
    # file id and media kind, to send it; the patient's chat id, to contact them for the clinician.
    sealed_photo: str | None = Field(default=None, max_length=1024)
    sealed_contact: str | None = Field(default=None, max_length=1024)
    sent_at: datetime | None = _timestamp()  # every clinician chat has it
    state: AlertState = Field(
        default=AlertState.OPEN, sa_column=Column(StoredEnum(AlertState, 16), nullable=False, index=True)
    )
    claimed_at: datetime | None = _timestamp()
    claimed_by: str | None = Field(default=None, max_length=128)  # clinician's name as Telegram shows it
    resolved_at: datetime | None = _timestamp()
    resolved_by: str | None = Field(default=None, max_length=128)
    resolution: AlertResolution | None = Field(default=None, sa_column=Column(StoredEnum(AlertResolution, 16)))
    patient_told_at: datetime | None = _timestamp()
    reminded_at: datetime | None = _timestamp()  # not claimed in time: sent again to every clinician
    escalated_at: datetime | None = _timestamp()  # not resolved in time: sent to the lead chat
    # Closing the loop (the thread's root): what the resolving clinician concluded and whether they referred, and
    # later the biopsy's result (/case ID biopsy RESULT); each with who and when. Every press is also a
    # ClinicianAction row (its ``detail``), so a changed conclusion keeps its history.
    conclusion: ClinicalFinding | None = Field(default=None, sa_column=Column(StoredEnum(ClinicalFinding, 16)))
    concluded_by: str | None = Field(default=None, max_length=128)
    concluded_at: datetime | None = _timestamp()
    referral: Referral | None = Field(default=None, sa_column=Column(StoredEnum(Referral, 16)))
    referred_by: str | None = Field(default=None, max_length=128)
    referred_at: datetime | None = _timestamp()
    biopsy_result: ClinicalFinding | None = Field(default=None, sa_column=Column(StoredEnum(ClinicalFinding, 16)))
    biopsy_by: str | None = Field(default=None, max_length=128)
    biopsy_at: datetime | None = _timestamp()


class AlertDeliveryKind(StrEnum):
    ALERT = "alert"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    CASE = "case"  # a clinician's /case copy (the latest in each chat), kept current like the alert


class ClinicianAlertDelivery(SQLModel, table=True):
    """One alert in one clinician chat, sent exactly once where Telegram allows it: the attempt is recorded
    before the call and the message ids after it. An attempt left without message ids (the process died, or
    the response was lost) has an unknown outcome: the next attempt says it may be a repeat."""

    __tablename__ = "clinician_alert_deliveries"

    alert_id: uuid.UUID = Field(primary_key=True)
    chat_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))  # staff, not a patient
    kind: AlertDeliveryKind = Field(sa_column=Column(StoredEnum(AlertDeliveryKind, 16), primary_key=True))
    attempts: int = 0
    attempt_started_at: datetime | None = _timestamp()  # set while an attempt is in flight (or was lost)
    possibly_repeated: bool = False  # an earlier attempt's outcome was unknown when this one was sent
    photo_message_id: int | None = None
    message_id: int | None = None  # the text with the buttons, edited as the alert's state changes
    sent_at: datetime | None = _timestamp()


class ClinicianActionKind(StrEnum):
    CLAIM = "claim"
    NO_ACTION = "no_action"  # on a melanoma alert, asks for confirmation first
    APPOINTMENT = "appointment"
    BETTER_PHOTO = "better_photo"  # the alert waits for the photo (AlertState.AWAITING_PHOTO)
    CONFIRM_NO_ACTION = "confirm_no_action"  # "Yes, close it"
    CANCEL = "cancel"  # the confirmation's "Cancel": the alert's buttons come back
    # "Write to the patient": the press asks for the text (outcome "prompted"), the clinician's reply to that prompt
    # is sent to the patient (outcome "sent", or why not); the text itself is never stored. Resolves nothing.
    WRITE = "write"
    CONCLUDE = "conclude"  # after resolving: what the clinician believes it is (detail: a ClinicalFinding)
    REFER = "refer"  # ...and whether they referred for a biopsy or an appointment (detail: a Referral)
    BIOPSY = "biopsy"  # /case ID biopsy RESULT (detail: a ClinicalFinding)


class ClinicianAction(SQLModel, table=True):
    """Every press of an alert's buttons (and every refused one): who, what, when, and whether it counted."""

    __tablename__ = "clinician_actions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    alert_id: uuid.UUID | None = Field(default=None, index=True)  # None: the data named no alert we know
    action: str = Field(max_length=32)  # a ClinicianActionKind, or what forged data asked for
    # A clinician's chat and Telegram user id (staff, configured); for a refused press from a patient's chat,
    # the chat's pseudonymous reference instead, never its id.
    chat: str = Field(max_length=64)
    user_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    user_name: str | None = Field(default=None, max_length=128)
    # done, already_claimed, already_resolved, already_asked, confirmation_asked, cancelled, refused (sampled: at
    # most one row per chat in REFUSAL_SAMPLE_INTERVAL_S, bot/clinician_access.py), unknown_alert; for "write":
    # prompted, sent, too_long, no_consent, no_contact, patient_erased; for "conclude" and "refer": too_early (the
    # alert is not resolved, or nothing concluded yet)
    outcome: str = Field(max_length=32)
    detail: str | None = Field(default=None, max_length=32)  # what was chosen: a conclusion, referral or biopsy
    at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))


class InboundUpdate(SQLModel, table=True):
    """A Telegram update the bot received, recorded before Telegram is told it arrived (bot/durable_updates.py).

    The raw update holds chat ids and texts, so it is kept only sealed (shared/sealing.py) and only until its
    handlers have run; then just its key and the times stay, for a day, so a redelivery is recognised.

    ``update_key`` (bot/durable_updates.update_key) identifies the update by the bot, its id and its own content:
    update ids start again with a new token or a fresh Bot API server, so an id alone would silence new messages
    as "already processed".

    An update is handled under a claim (``claimed_by`` until ``claimed_until``), renewed while its replica works
    on it: a replica that dies leaves it to the next leader once the claim lapses, and no two handle it at once."""

    __tablename__ = "inbound_updates"

    update_key: str = Field(sa_column=Column(String(96), primary_key=True))
    update_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    sealed_update: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    received_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
    processed_at: datetime | None = _timestamp(index=True)
    attempts: int = 0
    # The bot replica handling it, and until when (database clock): another replica replays it only after that.
    claimed_by: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    claimed_until: datetime | None = _timestamp()


class SpotFollowup(SQLModel, table=True):
    """A patient's wish to photograph a spot again (bot/spots.py): a reminder due at ``remind_at`` (sent by beat,
    worker/reminders.py) whose message, once sent (``prompt_message_id``), the new photo replies to. ``sealed``:
    shared.sealing of the chat id and the earlier photo's Telegram file id (the photo itself is never stored),
    for sending the reminder and comparing the two photos. Erased by /delete and by the retention purge; stopped
    from the reminder, /reminders, or when the patient withdraws."""

    __tablename__ = "spot_followups"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chat_ref: str = Field(index=True, max_length=64)
    job_id: uuid.UUID  # the earlier result
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
    remind_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    reminded_at: datetime | None = _timestamp()  # the reminder went out (or is going out: claimed)
    prompt_message_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    stopped_at: datetime | None = _timestamp()  # stopped by the patient, or a new photo answered it


class Lease(SQLModel, table=True):
    """Who holds a lease, and until when on the database's clock: the one bot replica that polls Telegram
    (bot/leadership.py). Any process may hold it once it has lapsed; its holder renews it."""

    __tablename__ = "leases"

    name: str = Field(sa_column=Column(String(32), primary_key=True))
    holder: str = Field(sa_column=Column(String(128), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SealedCheck(SQLModel, table=True):
    """A known value sealed with the deployment's delivery key (shared/sealing.py): a process whose key cannot
    open it would seal what the others cannot read (a patient never answered), so it reports not ready."""

    __tablename__ = "sealed_checks"

    name: str = Field(sa_column=Column(String(32), primary_key=True))
    sealed: str = Field(sa_column=Column(Text, nullable=False))


class HeldPhoto(SQLModel, table=True):
    """A photo sent before the patient answered the privacy question, held until they do (bot/held_photos.py):
    its Telegram message (file id, chat id: no image bytes), sealed, for at most an hour. "I agree" on any bot
    process analyses it without the patient sending it again; "No thanks" and /delete drop it."""

    __tablename__ = "held_photos"

    update_key: str = Field(sa_column=Column(String(96), primary_key=True))
    chat_ref: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    sealed_message: str = Field(sa_column=Column(Text, nullable=False))
    held_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
