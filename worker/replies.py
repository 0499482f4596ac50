"""What the patient gets back for one job, composed from its row: the refusal or the result text (the
wording lives in shared/texts/), the explanation picture and its caption, an album's one reply."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from models.serving.explain import explanation_picture
from models.serving.inference import Classifier
from shared.audit import Job, JobStatus, MediaKind
from shared.labels import PhotoKind, RiskLevel
from shared.metrics import timed
from shared.outcomes import FailureCode, RefusalCode
from shared.spot_followups import REMIND_CALLBACK
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts
from shared.texts.patient import MAX_FILE_MB

log = logging.getLogger(__name__)
KEPT_PHOTOS = 10  # photos kept in memory per worker process for their explanation picture (an album)


def patient_text(job: Job, same_photo_sent_at: datetime | None = None) -> str:
    """The refusal or the result (Telegram HTML) of a finished job; ``same_photo_sent_at``: when the patient sent
    this same photo before (its result is repeated, and said to be)."""
    if job.status == JobStatus.REJECTED:
        assert isinstance(job.error_code, RefusalCode)
        return patient_texts.rejection(job.error_code, MAX_FILE_MB, patient_texts.sent_name(MediaKind(job.media_kind)))
    if same_photo_sent_at is not None:
        return result_texts.same_photo_result(same_photo_sent_at, result_texts.PatientResult.of_job(job))
    return result_texts.result(result_texts.PatientResult.of_job(job))


def reminder_offer(job: Job) -> InlineKeyboardMarkup | None:
    """Under a single photo's LOW or MEDIUM result: "Remind me to photograph it again" (a separate opt-in:
    bot/spots.py). A HIGH result goes to the clinicians; a refusal has no spot to follow; an album's reply covers
    several spots."""
    if job.status != JobStatus.DONE or job.album_id is not None or job.risk not in (RiskLevel.LOW, RiskLevel.MEDIUM):
        return None
    button = InlineKeyboardButton(patient_texts.REMINDER_BUTTON, callback_data=f"{REMIND_CALLBACK}{job.id.hex}")
    return InlineKeyboardMarkup([[button]])


def explanation_caption(job: Job) -> str:
    assert job.ranking is not None
    return result_texts.EXPLANATION_CAPTION.format(top=result_texts.everyday_name(str(job.ranking[0]["code"])))


def explanation(classifier: Classifier, photo: KeptPhoto, job: Job) -> bytes | None:
    """The explanation picture (JPEG) of an analysed job's photo, or None if it cannot be drawn: the result has
    already gone out, so a picture that fails is logged, never the patient's problem."""
    assert job.ranking is not None and job.photo_kind is not None
    try:
        with timed("explanation"):
            kind = PhotoKind(job.photo_kind)
            return explanation_picture(photo.data, classifier, job.ranking, kind, photo.feature_map)
    except Exception as error:  # the text result stands on its own
        log.warning("job %s: no explanation picture (%s)", job.id, type(error).__name__)
        return None


@dataclass(frozen=True)
class KeptPhoto:
    data: bytes
    # The network's feature map from the photo's analysis (Prediction.feature_map): the picture's heat map
    # without a second run of the network. None for a photo downloaded again or not analysed here.
    feature_map: np.ndarray | None = None


@dataclass
class KeptPhotos:
    """The last few analysed photos of this worker process, by job id, so that a result finalized soon after its
    analysis in the same process (the usual case) draws its picture without downloading the photo or running the
    network again; a result finalized elsewhere downloads it again. Memory only, never on disk."""

    capacity: int = KEPT_PHOTOS
    _photos: OrderedDict[uuid.UUID, KeptPhoto] = field(default_factory=OrderedDict)

    def keep(self, job_id: uuid.UUID, photo: KeptPhoto) -> None:
        self._photos[job_id] = photo
        while len(self._photos) > self.capacity:
            self._photos.popitem(last=False)

    def take(self, job_id: uuid.UUID) -> KeptPhoto | None:
        return self._photos.pop(job_id, None)


# --- Albums: one reply for the photos sent together ------------------------------------------------------------


def ready_for_album_reply(job: Job) -> bool:
    """Finished as far as the album's reply goes: refused, failed, answered on its own, or its result combined."""
    return (
        job.replied_at is not None
        or job.status in (JobStatus.REJECTED, JobStatus.FAILED)
        or (job.status == JobStatus.DONE and job.answers_used is not None)
    )


def album_number(members: list[Job], job: Job) -> int:
    """The photo's number in its album (the order the patient sent them)."""
    return next((number for number, member in enumerate(members, start=1) if member.id == job.id), len(members))


def album_picture_caption(number: int, job: Job) -> str:
    return result_texts.ALBUM_PICTURE_CAPTION.format(number=number, caption=explanation_caption(job))


def album_texts(members: list[Job], claimed: list[uuid.UUID], later: bool = False) -> list[str]:
    """The album's one reply (split under Telegram's length limit), for the photos in ``claimed``; ``later``: its
    reply already went out for the others."""
    photos = []
    for number, member in enumerate(members, start=1):
        if member.id not in claimed:
            continue  # answered on its own (refused by the bot before analysis)
        if member.status == JobStatus.DONE:
            photos.append(result_texts.AlbumPhoto(number, result=result_texts.PatientResult.of_job(member)))
        elif isinstance(member.error_code, RefusalCode):
            sent = patient_texts.sent_name(MediaKind(member.media_kind))
            photos.append(
                result_texts.AlbumPhoto(number, refusal=patient_texts.rejection(member.error_code, MAX_FILE_MB, sent))
            )
        else:
            code = member.error_code if isinstance(member.error_code, FailureCode) else FailureCode.INTERNAL_ERROR
            photos.append(result_texts.AlbumPhoto(number, refusal=patient_texts.failure(code)))
    return result_texts.album_result(photos, later=later)
