"""The classification flow, on its own: download, check, classify, store, wait for the patient's answers,
combine, reply, forward to clinicians.

The photo and the questionnaire meet in the job row: the photo-only result is stored when the analysis ends,
the answers when the questionnaire closes. Whichever comes second leads to ``finalize`` (the worker calls it
at once; the bot queues it), and a delayed ``finalize`` queued by the analysis is the questionnaire's timeout.

Requests name the job only: the chat, the "Analysing..." message and Telegram's file id are read from the job
row (sealed; shared/job_store.Delivery), which is erased when the patient is answered. A finished result is
never turned into a failure: only a job not analysed yet is failed (``fail``); an answer that could not be
delivered stays due, and the reconciler (worker/reconciler.py) queues it again.

It takes its collaborators explicitly (Telegram client, classifier, job store, the clinicians' chats and how
to queue their alert), so it runs the same inside a Celery task and in a test process. It raises PTB's
transient errors (see worker/telegram.py) and database errors for the task to retry; it never retries by itself.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from telegram import InlineKeyboardMarkup
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from models.serving.decision import OtherKindResult
from models.serving.inference import Classifier, Prediction
from models.serving.screening import screen_photo
from models.serving.spot_change import compare_spots
from shared.answers import AnswerEffect
from shared.audit import Job, JobStatus, utc_now
from shared.clinic.store import NewClinicianAlert, ThreadPolicy
from shared.images import MAX_FILE_BYTES, UnreadableImage
from shared.job_store import (
    NEVER_ANALYSED,
    WAITING_STATUSES,
    CombinedPrediction,
    Delivery,
    IllegalTransition,
    JobStore,
)
from shared.labels import MALIGNANT_CODES, PhotoKind, RiskLevel, forwarded
from shared.metrics import PHOTO_TO_REPLY, RESULTS, count_job, timed
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.questionnaire import answers_from_record
from shared.queue import ClassifyPhotoRequest, FinalizeResultRequest, JobRequest, NotifyCliniciansRequest
from shared.telegram_calls import is_not_modified
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts.patient import MAX_FILE_MB
from worker import replies
from worker.telegram import FileTooLarge, TelegramClient, is_transient

log = logging.getLogger(__name__)
MAX_DELIVERY_ATTEMPTS = 3  # a photo whose analysis killed this many worker processes is failed, not retried
ALBUM_WAITING = "album_waiting"  # one photo of an album is done; the album's reply waits for the others
ALBUM_ANSWERED = "album_answered"
AWAITING_ANSWERS = "awaiting_answers"  # analysed; the result goes out when the questionnaire closes
ASSESSMENT_STEP = 0.10  # a change in malignant probability worth telling the patient about (ten points)


class OtherModelVersion(Exception):
    """This worker's model is not the one that analysed the photo (a rolling upgrade, a host on another image):
    its policy must not decide that photo's risk. The task is retried, for a worker of the job's version."""

    def __init__(self, job_id: uuid.UUID, job_version: str, own_version: str) -> None:
        super().__init__(f"job {job_id}: analysed by model {job_version}, this worker runs {own_version}")


@dataclass(frozen=True)
class PhotoOnlyResult:
    """The photo-only result as the analysing model stored it (risk, ranking): what the patient gets when no
    worker of that model version is left to combine it with the answers (the reconciler's last resort)."""

    risk: RiskLevel
    melanoma_alert: bool
    model_version: str
    photo_kind: PhotoKind
    ranking: list[dict[str, Any]]
    answers_used: list[str] = field(default_factory=list)
    answer_effects: dict[str, AnswerEffect] = field(default_factory=dict)
    raised_by_change: bool = False
    raised_by_skin_tone: bool = False

    @classmethod
    def of(cls, job: Job) -> PhotoOnlyResult:
        assert job.risk is not None and job.photo_kind is not None and job.model_version is not None
        return cls(
            job.risk,
            bool(job.melanoma_alert),
            job.model_version,
            job.photo_kind,
            list(job.photo_ranking or []),
            raised_by_skin_tone=bool(job.raised_by_skin_tone),  # the stored photo-only risk has the floor in it
        )

    def to_dict(self) -> dict[str, Any]:
        return {"ranking": self.ranking}


@dataclass(frozen=True)
class ClassificationFlow:
    telegram: TelegramClient
    classifier: Classifier
    jobs: JobStore
    clinician_chat_ids: Sequence[int]
    alert_clinicians: Callable[[NotifyCliniciansRequest], None]

    # The questionnaire's timeout: finalize this job later with whatever was answered by then.
    await_answers: Callable[[FinalizeResultRequest], None]
    # Analysed photos kept for their explanation picture (worker/replies.py).
    kept_photos: replies.KeptPhotos = field(default_factory=replies.KeptPhotos)
    clinician_threads: ThreadPolicy = field(default_factory=ThreadPolicy)  # a patient's alerts within the hour

    def classify_and_reply(self, request: ClassifyPhotoRequest) -> str:
        """Analyse the photo unless an earlier delivery did. A refusal is answered at once; a result waits for
        the questionnaire (or its timeout), unless the questionnaire closed first: then it is answered now."""
        job = self._load(request)
        if job is None:
            log.warning("job %s: not in the audit database; dropped", request.job_id)
            return "missing"
        if job.replied_at is not None:
            log.info("job %s: already answered; redelivery ignored", job.id)
            return "duplicate"
        if job.status == JobStatus.RUNNING and job.delivery_attempts >= MAX_DELIVERY_ATTEMPTS:
            # Each earlier attempt died with its worker process: this photo must not take down more.
            log.error("job %s: worker lost %d times; giving up", job.id, job.delivery_attempts)
            reason = f"the worker process died {job.delivery_attempts} times on this photo"
            self.fail(job.id, FailureCode.WORKER_LOST, reason)
            return JobStatus.FAILED.value
        if job.status in (*WAITING_STATUSES, JobStatus.FAILED):
            delivery = self.jobs.delivery_of(job)
            if delivery is None:
                log.error("job %s: no delivery data (erased or unreadable); cannot analyse or answer", job.id)
                return "undeliverable"
            job = self._analyse(job, delivery)
            if job.replied_at is not None:  # answered while it waited or ran (/delete, another delivery)
                log.info("job %s: answered before its analysis ended; dropped", job.id)
                return "duplicate"
        finalization = FinalizeResultRequest(job_id=job.id)
        if job.status == JobStatus.DONE:
            # Read after our own commit: of the bot closing the questionnaire and us storing the result, the
            # second to commit sees the first, so at least one side finalizes (finalize is idempotent).
            job = self.jobs.load(job.id) or job
            if job.answers_closed_at is None and job.same_photo_as is None:  # the same photo: its result, now
                self.await_answers(finalization)
                log.info("job %s: analysed; waiting for the questionnaire", job.id)
                return AWAITING_ANSWERS
            return self.finalize(finalization)
        return self._answer(job)

    def finalize(self, request: FinalizeResultRequest, *, last_resort: bool = False) -> str:
        """Combine the photo-only result with the answers (those given so far, if the questionnaire timed out),
        store it, alert the clinicians if it is high risk, and answer the patient; once.

        Only a worker running the model version that analysed the photo decides its risk (else
        ``OtherModelVersion``: the task is retried for another worker). ``last_resort`` (the reconciler's tries
        are spent, no such worker took it): the analysing model's stored photo-only result, answers left out."""
        job = self._load(request)
        if job is None:
            log.warning("job %s: not in the audit database (erased?); nothing to finalize", request.job_id)
            return "missing"
        if job.replied_at is not None:
            return "duplicate"
        if job.status != JobStatus.DONE:
            return job.status.value  # not analysed yet (the worker finalizes it), or refused (already answered)
        questionnaire_timed_out = False
        if job.answers_closed_at is None:
            job = self.jobs.close_answers(job.id)
            questionnaire_timed_out = job.same_photo_as is None
            log.info("job %s: questionnaire closed by the worker; finalizing with the answers given", job.id)
        assert job.photo_ranking is not None and job.photo_kind is not None
        prediction: CombinedPrediction
        if job.model_version is None or job.model_version == self.classifier.version:
            with timed("combine"):
                answers = answers_from_record(job.answers)
                changed = bool(job.spot_change and job.spot_change.get("changes"))
                other_kind = (
                    None
                    if job.other_kind_risk is None
                    else OtherKindResult(job.other_kind_risk, bool(job.other_kind_alert))
                )
                prediction = self.classifier.prediction_from_ranking(
                    job.photo_ranking,
                    job.photo_kind,
                    answers,
                    spot_changed=changed,
                    skin_tone_ita=job.skin_tone_ita,
                    other_kind=other_kind,
                )
        elif last_resort:
            log.warning("job %s: no worker of its model version finalized it; its photo-only result goes out", job.id)
            prediction = PhotoOnlyResult.of(job)
        else:
            raise OtherModelVersion(job.id, job.model_version, self.classifier.version)
        delivery = self.jobs.delivery_of(job)
        alert = None
        if self.clinician_chat_ids and delivery is not None and job.same_photo_as is None:
            # The same photo again is not a new case. The outbox row keeps its own sealed copy of the file id:
            # the job's is erased once the patient has the answer, the clinicians may need it later.
            alert = NewClinicianAlert(delivery.file_id, job.media_kind, delivery.chat_id, self.clinician_threads)
        # A high-risk result commits with its alert's outbox row: the alert is never lost, whatever follows.
        job = self.jobs.mark_combined(
            job.id,
            prediction,
            answer_effects=prediction.answer_effects,
            # Read from the shipped artifact's evaluation, never typed into a text.
            malignant_told_low_per_100=self.classifier.metadata.kinds[job.photo_kind].malignant_told_low_per_100,
            clinician_alert=alert,
        )
        if job.risk is not None and forwarded(job.risk) and alert is not None:
            try:
                self.alert_clinicians(NotifyCliniciansRequest(job_id=job.id))
            except Exception as error:  # the broker is away: beat's sweep sends the outbox row later
                log.warning(
                    "job %s: clinician alert not queued (%s); the sweep will send it", job.id, type(error).__name__
                )
        return self._answer(job, questionnaire_timed_out=questionnaire_timed_out)

    def _answer_album(self, job: Job, delivery: Delivery) -> str:
        """One photo of an album is finished: its explanation picture now; once every photo is, the album's one
        reply edits the album's "analysing..." message (whichever worker finishes last sends it, once)."""
        assert job.album_id is not None
        if job.status == JobStatus.DONE:
            number = replies.album_number(self.jobs.album(job.album_id), job)
            self._send_explanation(delivery, job, replies.album_picture_caption(number, job))
        members = self.jobs.album(job.album_id)
        if not all(replies.ready_for_album_reply(member) for member in members):
            return ALBUM_WAITING
        claimed = self.jobs.claim_album_reply(job.album_id)
        if not claimed:
            return "duplicate"  # another worker finished the album's last photo too, and replies
        # A photo recorded after the album's reply went out (held until consent, slow to arrive): its own message,
        # under the album's; an edit would hide the results already given.
        later = any(member.replied_at is not None for member in members if member.id not in claimed)
        try:
            texts = replies.album_texts(members, claimed, later=later)
            with timed("reply"):
                if later:
                    self.telegram.send_text(delivery.chat_id, texts[0], reply_to=delivery.status_message_id)
                else:
                    self._edit_or_send(job.id, delivery, texts[0])
            for text in texts[1:]:
                self.telegram.send_text(delivery.chat_id, text)
        except Exception:
            self.jobs.release_album_claim(claimed)  # the task's retry sends it
            raise
        self.jobs.album_replied(claimed)
        for member in members:
            if member.id in claimed:
                self._count_replied(member)
        log.info("album of job %s: one reply for %d photo(s)", job.id, len(claimed))
        return ALBUM_ANSWERED

    def _send_explanation(self, delivery: Delivery, job: Job, caption: str | None = None) -> None:
        """The explanation picture, after the result's text (worker/replies.py). Before the job is marked
        replied, so that Telegram's transient errors retry it with the task (the text edit is then a no-op)."""
        self.telegram.send_chat_action(delivery.chat_id, ChatAction.UPLOAD_PHOTO)
        photo = self.kept_photos.take(job.id)
        if photo is None:
            try:
                with timed("download"):
                    photo = replies.KeptPhoto(self.telegram.download_file(delivery.file_id, MAX_FILE_BYTES))
            except (TelegramError, FileTooLarge) as error:
                if is_transient(error):
                    raise
                log.warning("job %s: photo gone before its explanation picture (%s)", job.id, type(error).__name__)
                return
        picture = replies.explanation(self.classifier, photo, job)
        if picture is not None:
            self.telegram.send_picture(delivery.chat_id, picture, caption or replies.explanation_caption(job))

    def _load(self, request: JobRequest) -> Job | None:
        """The request's job; a message queued in the old shape lends its delivery data to a row without."""
        job = self.jobs.load(request.job_id)
        legacy = request.legacy_delivery()
        if job is not None and legacy is not None and job.delivery is None and job.replied_at is None:
            chat_id, file_id, status_message_id = legacy
            delivery = Delivery(chat_id=chat_id, file_id=file_id, status_message_id=status_message_id)
            job = self.jobs.adopt_delivery(job.id, delivery)
        return job

    def _analyse(self, job: Job, delivery: Delivery) -> Job:
        try:
            job = self.jobs.mark_running(job.id)
        except IllegalTransition:  # closed since we loaded it (/delete, "No thanks"), or finished by a redelivery
            return self._finished_elsewhere(job)
        try:
            with timed("download"):
                data = self.telegram.download_file(delivery.file_id, MAX_FILE_BYTES)
        except FileTooLarge:
            return self._reject(job, Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_FILE_MB} MB"), None)
        except TelegramError as error:
            if is_transient(error):
                # Back to the queue, alive: only a job left RUNNING counts as a worker lost on it.
                try:
                    self.jobs.mark_requeued(job.id)
                except IllegalTransition:  # closed meanwhile ("No thanks"): its answer is the closing text
                    return self._finished_elsewhere(job)
                raise
            reason = f"Telegram refused the download: {error.message}"[:500]
            return self._reject(job, Refusal(RefusalCode.DOWNLOAD_FAILED, reason), None)
        image_sha256 = hashlib.sha256(data).hexdigest()
        earlier = self.jobs.earlier_result(job, image_sha256)
        if earlier is not None:  # the patient sent this photo before: its result again, said to be the same photo
            log.info("job %s: the same photo as job %s", job.id, earlier.id)
            self.kept_photos.keep(job.id, replies.KeptPhoto(data))
            try:
                return self.jobs.mark_same_photo(job.id, earlier, image_sha256=image_sha256)
            except IllegalTransition:
                return self._finished_elsewhere(job)
        try:
            with timed("screening"):  # decode, gates and model: one call (models/serving/screening.py)
                prediction = screen_photo(data, self.classifier)
        except UnreadableImage as error:
            # An unknown code is a bug (a gate without its patient text): ValueError, failed as internal_error.
            return self._reject(job, Refusal(RefusalCode(error.code), error.reason), image_sha256)
        self.kept_photos.keep(job.id, replies.KeptPhoto(data, prediction.feature_map))
        spot_change = self._compare_with_earlier(job, delivery, data, prediction) if job.same_spot_as else None
        try:
            return self.jobs.mark_done(job.id, prediction, image_sha256=image_sha256, spot_change=spot_change)
        except IllegalTransition:
            return self._finished_elsewhere(job)

    def _compare_with_earlier(
        self, job: Job, delivery: Delivery, data: bytes, prediction: Prediction
    ) -> dict[str, Any]:
        """A new photo of a spot photographed before (sent in reply to its reminder): what changed, as stored with
        the job (shared/audit.py ``Job.spot_change``). The photos are compared as the patient took them
        (models/serving/spot_change.py); the model's assessment is compared by the malignant probability."""
        earlier = self.jobs.load(job.same_spot_as) if job.same_spot_as is not None else None
        if earlier is None or earlier.chat_ref != job.chat_ref or not earlier.photo_ranking:
            return {"comparable": False, "reason": "the earlier result is no longer stored", "changes": []}
        found: dict[str, Any] = {
            "compared_with": earlier.received_at.isoformat(),
            "earlier_risk": None if earlier.risk is None else earlier.risk.value,
            "assessment": _assessment_change(earlier.photo_ranking, prediction.to_dict()["ranking"]),
        }
        if delivery.earlier_file_id is None:  # marked from /history: the earlier photo itself is not kept
            return {**found, "comparable": False, "reason": "the earlier photo is not kept", "changes": []}
        try:
            with timed("download"):
                earlier_data = self.telegram.download_file(delivery.earlier_file_id, MAX_FILE_BYTES)
            with timed("compare"):
                comparison = compare_spots(earlier_data, data)
        except (TelegramError, FileTooLarge, UnreadableImage) as error:
            log.info("job %s: not compared with its earlier photo (%s)", job.id, type(error).__name__)
            return {**found, "comparable": False, "reason": "the earlier photo could not be fetched", "changes": []}
        return {
            **found,
            "comparable": comparison.comparable,
            "reason": comparison.reason,
            "changes": [change.value for change in comparison.changes],
            "size_ratio": comparison.size_ratio,
            "darkening": comparison.darkening,
            "colour_shift": comparison.colour_shift,
        }

    def _reject(self, job: Job, refusal: Refusal, image_sha256: str | None) -> Job:
        log.info("job %s: rejected (%s)", job.id, refusal.code)
        try:
            return self.jobs.mark_rejected(job.id, refusal, image_sha256=image_sha256)
        except IllegalTransition:
            return self._finished_elsewhere(job)

    def _finished_elsewhere(self, job: Job) -> Job:
        """A second delivery of the same job (the reconciler's, or a redelivery) finished it first: its outcome
        stands, and this one goes on from it."""
        current = self.jobs.load(job.id)
        if current is None or current.status not in (JobStatus.DONE, JobStatus.REJECTED, JobStatus.FAILED):
            raise IllegalTransition(job.id, job.status, "finished")
        log.info("job %s: finished by another delivery (%s)", job.id, current.status.value)
        return current

    def _answer(self, job: Job, *, questionnaire_timed_out: bool = False) -> str:
        """Tell the patient the job's final answer (result, refusal or apology) and record it, once."""
        delivery = self.jobs.delivery_of(job)
        if delivery is None:
            log.error("job %s: no delivery data (erased or unreadable); the patient cannot be answered", job.id)
            return "undeliverable"
        if job.album_id is not None:
            return self._answer_album(job, delivery)
        with timed("reply"):
            self._edit_or_send(job.id, delivery, self._patient_text(job), replies.reminder_offer(job))
        self._close_questionnaire(job, delivery, timed_out=questionnaire_timed_out)
        if job.status == JobStatus.DONE:
            self._send_explanation(delivery, job)
        try:
            self._mark_replied(job.id)
        except IllegalTransition:
            current = self.jobs.load(job.id)
            if current is not None and current.replied_at is not None:
                return "duplicate"  # a concurrent delivery answered the same text first
            raise
        return job.status.value

    def _close_questionnaire(self, job: Job, delivery: Delivery, *, timed_out: bool) -> None:
        """A questionnaire left open over the answer: one the photo turned out not to need (refused, failed, the
        same photo again) is deleted, so no question stands about a photo already answered; one nobody finished
        says it closed, and why. One the patient closed, the bot closed. Best effort: a tap on a stale question is
        told the questions are closed (bot/questionnaire.py)."""
        if delivery.questionnaire_message_id is None or job.error_code in NEVER_ANALYSED:
            return  # closed by the patient's /delete or "No thanks", which the bot answered there
        chat_id, message_id = delivery.chat_id, delivery.questionnaire_message_id
        try:
            if job.status != JobStatus.DONE or job.same_photo_as is not None:
                try:
                    self.telegram.delete_message(chat_id, message_id)
                except BadRequest:  # too old to delete (48 h): it says so instead
                    self.telegram.edit_text(chat_id, message_id, questionnaire_texts.QUESTIONNAIRE_NOT_NEEDED)
            elif timed_out:
                self.telegram.edit_text(chat_id, message_id, questionnaire_texts.QUESTIONNAIRE_TIMED_OUT)
        except TelegramError as error:
            log.info("job %s: questionnaire not closed (%s)", job.id, type(error).__name__)

    def _edit_or_send(
        self, job_id: uuid.UUID, delivery: Delivery, text: str, buttons: InlineKeyboardMarkup | None = None
    ) -> None:
        """Edit the "analysing..." message into ``text``; if it is gone (or was never sent), send a new message."""
        if delivery.status_message_id is not None:
            try:
                self.telegram.edit_text(delivery.chat_id, delivery.status_message_id, text, reply_markup=buttons)
                return
            except BadRequest as error:
                if is_not_modified(error):
                    return  # the text is already there: an earlier attempt succeeded
                log.info("job %s: edit failed (%s); sending a new message", job_id, error.message)
        # Threaded to its photo (the reminder's button reads the photo from there: bot/spots.py).
        self.telegram.send_text(delivery.chat_id, text, reply_markup=buttons, reply_to=delivery.photo_message_id)

    def fail(self, job_id: uuid.UUID, code: FailureCode, reason: str) -> None:
        """A job that cannot be analysed: record the failure and, best effort, turn the patient's "analysing..."
        message into an apology. A job already analysed or refused keeps its outcome (never turned into
        "analysis failed"): its answer stays due and the reconciler delivers it."""
        job = self.jobs.load(job_id)
        if job is None or job.replied_at is not None:
            return
        if job.status in (JobStatus.DONE, JobStatus.REJECTED):
            log.warning("job %s: %s after its analysis; its outcome is kept, the answer stays due", job_id, code)
            return
        if job.status != JobStatus.FAILED:
            try:
                job = self.jobs.mark_failed(job_id, code, reason)
            except IllegalTransition:  # closed ("No thanks") or finished meanwhile: once more, from that state
                return self.fail(job_id, code, reason)
        try:
            self._answer(job)
        except Exception:  # the failure is recorded; telling the patient is best effort (the reconciler retries)
            log.warning("job %s: could not tell the patient about the failure", job_id)

    def give_up(self, job_id: uuid.UUID) -> str:
        """The reconciler's tries are spent. An analysed job's result is delivered from here, never replaced by
        an apology (it may be a high-risk one); a job not analysed yet is failed, and the patient gets the
        apology (or the refusal or failure already recorded). Raises what Telegram raises: the reconciler tries
        again."""
        job = self.jobs.load(job_id)
        if job is None or job.replied_at is not None:
            return "duplicate"
        if job.status == JobStatus.DONE:
            try:
                return self.finalize(FinalizeResultRequest(job_id=job_id), last_resort=True)
            except (TelegramError, DBAPIError):  # passing trouble: the reconciler tries again
                raise
            except Exception as error:  # a result that cannot be finalized at all: the apology, not silence
                log.error("job %s: its result could not be delivered (%s)", job_id, type(error).__name__)
        if job.status != JobStatus.FAILED and job.status != JobStatus.REJECTED:
            try:
                job = self.jobs.mark_failed(job_id, FailureCode.STALLED, "the reconciler's tries ran out")
            except IllegalTransition:  # closed ("No thanks") or finished meanwhile: once more, from that state
                return self.give_up(job_id)
        log.error("job %s: given up (%s); the patient is told", job_id, job.error_code)
        return self._answer(job)

    def tell_taking_longer(self, job_id: uuid.UUID) -> None:
        """Edit the "analysing..." message to say it takes longer than usual (once: the caller claimed it).
        If the answer went out meanwhile, it is put back, so the notice never hides it."""
        job = self.jobs.load(job_id)
        delivery = None if job is None else self.jobs.delivery_of(job)
        if job is None or delivery is None or delivery.status_message_id is None:
            return
        try:
            self.telegram.edit_text(delivery.chat_id, delivery.status_message_id, patient_texts.TAKING_LONGER)
        except BadRequest as error:
            log.info("job %s: the taking-longer notice was not shown (%s)", job_id, error.message)
            return
        after = self.jobs.load(job_id)
        if after is not None and _answer_written(after):
            # The worker answered between our claim and our edit: its answer goes back on top.
            self._edit_or_send(job_id, delivery, self._patient_text(after))

    def _patient_text(self, job: Job) -> str:
        earlier = None if job.same_photo_as is None else self.jobs.load(job.same_photo_as)
        return patient_text(job, same_photo_sent_at=None if earlier is None else earlier.received_at)

    def _mark_replied(self, job_id: uuid.UUID) -> Job:
        """The patient has the answer: record it, count the outcome and the photo-to-reply time."""
        job = self.jobs.mark_replied(job_id)
        self._count_replied(job)
        return job

    @staticmethod
    def _count_replied(job: Job) -> None:
        count_job(job.status.value, None if job.error_code is None else job.error_code.value)
        if job.status == JobStatus.DONE and job.photo_kind is not None and job.risk is not None:
            RESULTS.labels(photo_kind=job.photo_kind.value, risk=job.risk.value).inc()
        PHOTO_TO_REPLY.observe(max((utc_now() - job.received_at).total_seconds(), 0.0))


def _assessment_change(earlier: list[dict[str, Any]], now: list[dict[str, Any]]) -> str:
    """ "higher", "lower" or "same": the photo's malignant probability now against the earlier photo's (by more
    than ASSESSMENT_STEP either way)."""

    def malignant(ranking: list[dict[str, Any]]) -> float:
        return sum(float(entry["probability"]) for entry in ranking if entry["code"] in MALIGNANT_CODES)

    difference = malignant(now) - malignant(earlier)
    if abs(difference) < ASSESSMENT_STEP:
        return "same"
    return "higher" if difference > 0 else "lower"


def _answer_written(job: Job) -> bool:
    """The job's final answer is decided (and may be on its way to the patient)."""
    if job.replied_at is not None or job.status in (JobStatus.REJECTED, JobStatus.FAILED):
        return True
    return job.status == JobStatus.DONE and job.answers_used is not None  # combined: finalize is replying


def patient_text(job: Job, same_photo_sent_at: datetime | None = None) -> str:
    """The final answer for a finished job: its apology (failed), else its refusal or result (worker/replies.py;
    ``same_photo_sent_at``: when the patient sent this same photo before)."""
    if job.status == JobStatus.FAILED:
        assert isinstance(job.error_code, FailureCode)
        return patient_texts.failure(job.error_code)
    return replies.patient_text(job, same_photo_sent_at=same_photo_sent_at)
