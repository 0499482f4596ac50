"""The classification flow, on its own: download, check, classify, store, wait for the patient's answers,
combine, reply, forward to clinicians.

The photo and the questionnaire meet in the job row: the photo-only result is stored when the analysis ends,
the answers when the questionnaire closes. Whichever comes second leads to ``finalize`` (the worker calls it
at once; the bot queues it), and a delayed ``finalize`` queued by the analysis is the questionnaire's timeout.

It takes its collaborators explicitly (Telegram client, classifier, job store, the clinicians' chats and how
to queue their alert), so it runs the same inside a Celery task and in a test process. It raises PTB's
transient errors (see worker/telegram.py) for the task to retry; it never retries by itself.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC

from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from models.inference import Classifier
from models.screening import screen_photo
from shared import messages
from shared.audit import Job, JobStatus, utc_now
from shared.clinicians import NewClinicianAlert, ThreadPolicy
from shared.images import MAX_FILE_BYTES, UnreadableImage
from shared.job_store import IllegalTransition, JobStore
from shared.labels import RiskLevel
from shared.messages import MAX_FILE_MB
from shared.metrics import PHOTO_TO_REPLY, count_job, timed
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.questionnaire import answers_from_record
from shared.queue import ClassifyPhotoRequest, FinalizeResultRequest, NotifyCliniciansRequest
from worker import replies
from worker.telegram import FileTooLarge, TelegramClient, is_transient

log = logging.getLogger(__name__)
MAX_DELIVERY_ATTEMPTS = 3  # a photo whose analysis killed this many worker processes is failed, not retried
ALBUM_WAITING = "album_waiting"  # one photo of an album is done; the album's reply waits for the others
ALBUM_ANSWERED = "album_answered"
AWAITING_ANSWERS = "awaiting_answers"  # analysed; the result goes out when the questionnaire closes


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
        job = self.jobs.load(request.job_id)
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
            self.fail(request, FailureCode.WORKER_LOST, reason)
            return JobStatus.FAILED.value
        if job.status not in (JobStatus.DONE, JobStatus.REJECTED):
            job = self._analyse(request, job)
        finalization = FinalizeResultRequest.for_photo(request)
        if job.status == JobStatus.DONE:
            # Read after our own commit: of the bot closing the questionnaire and us storing the result, the
            # second to commit sees the first, so at least one side finalizes (finalize is idempotent).
            job = self.jobs.load(job.id) or job
            if job.answers_closed_at is None:
                self.await_answers(finalization)
                log.info("job %s: analysed; waiting for the questionnaire", job.id)
                return AWAITING_ANSWERS
            return self.finalize(finalization)
        if job.album_id is not None:
            return self._answer_album(request, job)
        self._reply(request, replies.patient_text(job))
        self._mark_replied(job.id)
        return job.status.value

    def finalize(self, request: FinalizeResultRequest) -> str:
        """Combine the photo-only result with the answers (those given so far, if the questionnaire timed out),
        store it, alert the clinicians if it is high risk, and answer the patient; once."""
        job = self.jobs.load(request.job_id)
        if job is None:
            log.warning("job %s: not in the audit database (erased?); nothing to finalize", request.job_id)
            return "missing"
        if job.replied_at is not None:
            return "duplicate"
        if job.status != JobStatus.DONE:
            return job.status.value  # not analysed yet (the worker finalizes it), or refused (already answered)
        if job.answers_closed_at is None:
            job = self.jobs.close_answers(job.id)
            log.info("job %s: questionnaire timed out; finalizing with the answers given", job.id)
        assert job.photo_ranking is not None and job.photo_kind is not None
        answers = answers_from_record(job.answers)
        with timed("combine"):
            prediction = self.classifier.prediction_from_ranking(job.photo_ranking, job.photo_kind, answers)
            details = replies.result_details(self.classifier, job, job.photo_kind, answers)
        alert = None
        if self.clinician_chat_ids and job.same_photo_as is None:  # the same photo again is not a new case
            alert = NewClinicianAlert(request.file_id, request.media_kind, request.chat_id, self.clinician_threads)
        # A high-risk result commits with its alert's outbox row: the alert is never lost, whatever follows.
        job = self.jobs.mark_combined(
            job.id,
            prediction,
            answer_effects=details.answer_effects,
            malignant_told_low_per_100=details.malignant_told_low_per_100,
            clinician_alert=alert,
        )
        if job.risk == RiskLevel.HIGH and alert is not None:
            try:
                self.alert_clinicians(NotifyCliniciansRequest(job_id=job.id))
            except Exception as error:  # the broker is away: beat's sweep sends the outbox row later
                log.warning(
                    "job %s: clinician alert not queued (%s); the sweep will send it", job.id, type(error).__name__
                )
        if job.album_id is not None:
            return self._answer_album(request, job)
        earlier = None if job.same_photo_as is None else self.jobs.load(job.same_photo_as)
        self._reply(
            request, replies.patient_text(job, same_photo_sent_at=None if earlier is None else earlier.received_at)
        )
        self._send_explanation(request, job)
        try:
            self._mark_replied(job.id)
        except IllegalTransition:
            current = self.jobs.load(job.id)
            if current is not None and current.replied_at is not None:
                return "duplicate"  # a concurrent finalize answered the same text first
            raise
        return job.status.value

    def _answer_album(self, request: ClassifyPhotoRequest | FinalizeResultRequest, job: Job) -> str:
        """One photo of an album is finished: its explanation picture now; once every photo is, the album's one
        reply edits the album's "analysing..." message (whichever worker finishes last sends it, once)."""
        assert job.album_id is not None
        if job.status == JobStatus.DONE:
            number = replies.album_number(self.jobs.album(job.album_id), job)
            self._send_explanation(request, job, replies.album_picture_caption(number, job))
        members = self.jobs.album(job.album_id)
        if not all(replies.ready_for_album_reply(member) for member in members):
            return ALBUM_WAITING
        claimed = self.jobs.claim_album_reply(job.album_id)
        if not claimed:
            return "duplicate"  # another worker finished the album's last photo too, and replies
        try:
            texts = replies.album_texts(members, claimed)
            self._reply(request, texts[0])
            for text in texts[1:]:
                self.telegram.send_text(request.chat_id, text)
        except Exception:
            self.jobs.release_album_claim(claimed)  # the task's retry sends it
            raise
        for member in members:
            if member.id in claimed:
                self._count_replied(member)
        log.info("album of job %s: one reply for %d photo(s)", job.id, len(claimed))
        return ALBUM_ANSWERED

    def _send_explanation(
        self, request: ClassifyPhotoRequest | FinalizeResultRequest, job: Job, caption: str | None = None
    ) -> None:
        """The explanation picture, after the result's text (worker/replies.py). Before the job is marked
        replied, so that Telegram's transient errors retry it with the task (the text edit is then a no-op)."""
        self.telegram.send_chat_action(request.chat_id, ChatAction.UPLOAD_PHOTO)
        photo = self.kept_photos.take(job.id)
        if photo is None:
            try:
                with timed("download"):
                    photo = self.telegram.download_file(request.file_id, MAX_FILE_BYTES)
            except (TelegramError, FileTooLarge) as error:
                if is_transient(error):
                    raise
                log.warning("job %s: photo gone before its explanation picture (%s)", job.id, type(error).__name__)
                return
        picture = replies.explanation(self.classifier, photo, job)
        if picture is not None:
            self.telegram.send_picture(request.chat_id, picture, caption or replies.explanation_caption(job))

    def _analyse(self, request: ClassifyPhotoRequest, job: Job) -> Job:
        job = self.jobs.mark_running(job.id)
        try:
            with timed("download"):
                data = self.telegram.download_file(request.file_id, MAX_FILE_BYTES)
        except FileTooLarge:
            return self._reject(job, Refusal(RefusalCode.TOO_LARGE, f"the file is larger than {MAX_FILE_MB} MB"), None)
        except TelegramError as error:
            if is_transient(error):
                # Back to the queue, alive: only a job left RUNNING counts as a worker lost on it.
                self.jobs.mark_requeued(job.id)
                raise
            reason = f"Telegram refused the download: {error.message}"[:500]
            return self._reject(job, Refusal(RefusalCode.DOWNLOAD_FAILED, reason), None)
        image_sha256 = hashlib.sha256(data).hexdigest()
        self.kept_photos.keep(job.id, data)
        earlier = self.jobs.earlier_result(job, image_sha256)
        if earlier is not None:  # the patient sent this photo before: its result again, said to be the same photo
            log.info("job %s: the same photo as job %s", job.id, earlier.id)
            return self.jobs.mark_same_photo(job.id, earlier, image_sha256=image_sha256)
        try:
            with timed("screening"):  # decode, gates and model: one call (models/screening.py)
                prediction = screen_photo(data, self.classifier)
        except UnreadableImage as error:
            # An unknown code is a bug (a gate without its patient text): ValueError, failed as internal_error.
            return self._reject(job, Refusal(RefusalCode(error.code), error.reason), image_sha256)
        return self.jobs.mark_done(job.id, prediction, image_sha256=image_sha256)

    def _reject(self, job: Job, refusal: Refusal, image_sha256: str | None) -> Job:
        log.info("job %s: rejected (%s)", job.id, refusal.code)
        return self.jobs.mark_rejected(job.id, refusal, image_sha256=image_sha256)

    def _reply(self, request: ClassifyPhotoRequest | FinalizeResultRequest, text: str) -> None:
        """Edit the "analysing..." message into the answer; if it is gone, send a new message."""
        with timed("reply"):
            self._edit_or_send(request, text)

    def _edit_or_send(self, request: ClassifyPhotoRequest | FinalizeResultRequest, text: str) -> None:
        try:
            self.telegram.edit_text(request.chat_id, request.status_message_id, text)
        except BadRequest as error:
            if "not modified" in error.message:
                return  # the text is already there: an earlier attempt succeeded
            log.info("job %s: edit failed (%s); sending a new message", request.job_id, error.message)
            self.telegram.send_text(request.chat_id, text)

    def fail(self, request: ClassifyPhotoRequest | FinalizeResultRequest, code: FailureCode, reason: str) -> None:
        """Record the failure and, best effort, turn the patient's "analysing..." message into an apology."""
        self.jobs.mark_failed(request.job_id, code, reason)
        try:
            self._reply(request, messages.failure(code))
            self._mark_replied(request.job_id)
        except Exception:  # the failure is recorded; telling the patient is best effort
            log.warning("job %s: could not tell the patient about the failure", request.job_id)

    def _mark_replied(self, job_id: uuid.UUID) -> Job:
        """The patient has the answer: record it, count the outcome and the photo-to-reply time."""
        job = self.jobs.mark_replied(job_id)
        self._count_replied(job)
        return job

    @staticmethod
    def _count_replied(job: Job) -> None:
        count_job(job.status.value, None if job.error_code is None else job.error_code.value)
        received = job.received_at if job.received_at.tzinfo else job.received_at.replace(tzinfo=UTC)
        PHOTO_TO_REPLY.observe(max((utc_now() - received).total_seconds(), 0.0))
