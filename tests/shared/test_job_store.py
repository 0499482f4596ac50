"""The job store's typed transitions, sealed delivery data, idempotent intake and the reconciler's claims, on a
real (migrated) SQLite audit database."""

from __future__ import annotations

import copy
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, update

from models.serving.inference import Classifier
from models.serving.screening import screen_photo
from shared.answers import PatientAnswers
from shared.audit import Job, JobStatus, MediaKind, utc_now
from shared.job_store import Deadlines, Delivery, IllegalTransition, JobStore
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import FailureCode, Refusal, RefusalCode
from shared.sealing import Sealer
from tests.auxil.database import migrated_engine


class FixedPrediction:
    """A prediction with a chosen risk (a value, like models' Prediction; the last test stores a real one)."""

    def __init__(self, risk: RiskLevel, photo_kind: PhotoKind = PhotoKind.CLINICAL) -> None:
        self.risk = risk
        self.photo_kind = photo_kind
        self.melanoma_alert = risk == RiskLevel.HIGH
        self.model_version = "test-model"

    def to_dict(self) -> dict[str, Any]:
        return {"ranking": [{"code": "mel", "name": "Melanoma", "probability": 0.8}], "risk": self.risk.value}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(migrated_engine(f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))


def received(store: JobStore) -> Job:
    return store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u1")


def test_a_job_goes_from_queued_to_done_and_replied(store: JobStore) -> None:
    job = received(store)
    assert job.status == JobStatus.QUEUED
    running = store.mark_running(job.id)
    assert running.status == JobStatus.RUNNING and running.delivery_attempts == 1 and running.started_at
    done = store.mark_done(job.id, FixedPrediction(RiskLevel.HIGH, PhotoKind.CLINICAL), image_sha256="ab" * 32)
    assert (done.status, done.risk, done.melanoma_alert, done.photo_kind) == (
        JobStatus.DONE,
        RiskLevel.HIGH,
        True,
        PhotoKind.CLINICAL,
    )
    reloaded = store.load(job.id)
    assert reloaded is not None and reloaded.risk is RiskLevel.HIGH and reloaded.photo_kind is PhotoKind.CLINICAL
    assert store.mark_replied(job.id).replied_at is not None


def test_refusal_and_failure_codes_are_stored_as_their_enums(store: JobStore) -> None:
    refused = store.record_refused(
        chat_ref="c" * 32,
        media_kind=MediaKind.DOCUMENT,
        file_unique_id="u2",
        refusal=Refusal(RefusalCode.NOT_AN_IMAGE, "a pdf"),
    )
    stored = store.load(refused.id)
    assert stored is not None and stored.error_code is RefusalCode.NOT_AN_IMAGE and stored.finished_at
    failed = store.mark_failed(received(store).id, FailureCode.ENQUEUE_FAILED, "broker down")
    stored = store.load(failed.id)
    assert stored is not None and stored.error_code is FailureCode.ENQUEUE_FAILED


def test_a_redelivered_running_job_counts_its_attempts_and_a_download_retry_requeues(store: JobStore) -> None:
    job = received(store)
    store.mark_running(job.id)
    assert store.mark_requeued(job.id).status == JobStatus.QUEUED
    store.mark_running(job.id)
    assert store.mark_running(job.id).delivery_attempts == 3  # redelivered after its worker died


def test_illegal_transitions_are_refused(store: JobStore) -> None:
    job = received(store)
    with pytest.raises(IllegalTransition):
        store.mark_done(job.id, FixedPrediction(RiskLevel.LOW), image_sha256="0" * 64)  # never ran
    with pytest.raises(IllegalTransition):
        store.mark_replied(job.id)  # nothing final to tell yet
    store.mark_running(job.id)
    store.mark_rejected(job.id, Refusal(RefusalCode.BLURRY, "blurred"))
    with pytest.raises(IllegalTransition):
        store.mark_running(job.id)  # a rejected photo is never analysed again
    store.mark_replied(job.id)
    with pytest.raises(IllegalTransition):
        store.mark_replied(job.id)  # the patient is answered once
    with pytest.raises(IllegalTransition):
        store.mark_clinician_notified(job.id, 9001)  # only high-risk results go to clinicians
    with pytest.raises(LookupError):
        store.mark_running(uuid.uuid4())


def test_clinicians_notified_are_kept_per_chat(store: JobStore) -> None:
    job = received(store)
    store.mark_running(job.id)
    store.mark_done(job.id, FixedPrediction(RiskLevel.HIGH), image_sha256="ab" * 32)
    store.mark_clinician_notified(job.id, 9001)
    notified = store.mark_clinician_notified(job.id, 9002).clinicians_notified
    assert notified is not None and set(notified) == {"9001", "9002"}


def test_a_real_prediction_is_stored_with_its_ranking(store: JobStore, data_dir: Path, classifier: Classifier) -> None:
    data = next((data_dir / "images").glob("*.jpg")).read_bytes()
    prediction = screen_photo(data, classifier)
    job = received(store)
    store.mark_running(job.id)
    done = store.mark_done(job.id, prediction, image_sha256="cd" * 32)
    assert done.ranking == prediction.to_dict()["ranking"] and done.risk is prediction.risk
    assert done.model_version == classifier.version
    skin_tone = prediction.skin_tone
    assert done.skin_tone_ita == (None if skin_tone is None else skin_tone.ita)
    assert done.skin_tone_caveat == (skin_tone is not None and skin_tone.outside_measured_range)
    assert done.raised_by_skin_tone == prediction.raised_by_skin_tone


def test_a_photo_of_uncertain_kind_keeps_the_other_kinds_result_and_the_same_photo_again_too(
    store: JobStore, data_dir: Path, classifier: Classifier
) -> None:
    undecided = copy.copy(classifier)  # a band that takes every photo (the same loaded networks)
    gates = classifier.metadata.gates.model_copy(
        update={"clinical_share_under": 0.0, "dermoscopic_share_at_least": 1.0}
    )
    undecided.metadata = classifier.metadata.model_copy(update={"gates": gates})
    data = next((data_dir / "images").glob("*.jpg")).read_bytes()
    prediction = screen_photo(data, undecided)
    assert prediction.other_kind is not None
    job = received(store)
    store.mark_running(job.id)
    done = store.mark_done(job.id, prediction, image_sha256="ef" * 32)
    assert (done.other_kind_risk, done.other_kind_alert) == (
        prediction.other_kind.risk,
        prediction.other_kind.melanoma_alert,
    )
    again = received(store)
    store.mark_running(again.id)
    repeated = store.mark_same_photo(again.id, done, image_sha256="ef" * 32)
    assert (repeated.other_kind_risk, repeated.other_kind_alert) == (done.other_kind_risk, done.other_kind_alert)


DELIVERY = Delivery(chat_id=-100_987_654_321, file_id="AgACAgQAAxkBAAIB-file-id")


def store_with(tmp_path: Path, deadlines: Deadlines) -> JobStore:
    return JobStore(migrated_engine(f"sqlite:///{tmp_path / 'deadlines.sqlite3'}"), deadlines=deadlines)


def raw_rows(store: JobStore) -> str:
    """Every stored value of every job, as the database holds them (what a backup or a stolen file shows)."""
    with store._engine.connect() as connection:
        return repr(connection.execute(text("SELECT * FROM jobs")).all())


def test_delivery_data_is_sealed_at_rest_and_erased_once_answered(store: JobStore) -> None:
    job = store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY)
    job = store.set_status_message(job.id, 77)
    assert store.delivery_of(job) == DELIVERY.model_copy(update={"status_message_id": 77})
    at_rest = raw_rows(store)
    assert "987654321" not in at_rest and "AgACAgQAAxkBAAIB" not in at_rest
    store.mark_running(job.id)
    store.mark_rejected(job.id, Refusal(RefusalCode.BLURRY, "blurred"))
    answered = store.mark_replied(job.id)
    assert answered.delivery is None and answered.due_at is None and store.delivery_of(answered) is None


def test_a_patients_unanswered_status_messages_are_found_for_delete(store: JobStore) -> None:
    """What /delete edits into "no result for this photo": each waiting job's "Analysing..." message (an
    album's shared one once), not an answered job's, not another patient's."""
    patient, other = "p" * 32, "o" * 32

    def photo(chat_ref: str, status_message_id: int, album_id: str | None = None) -> Job:
        job = store.record_received(
            chat_ref=chat_ref, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY, album_id=album_id
        )
        return store.set_status_message(job.id, status_message_id)

    photo(patient, 11)
    photo(patient, 12, album_id="a1")
    photo(patient, 12, album_id="a1")
    answered = photo(patient, 13)
    store.mark_running(answered.id)
    store.mark_rejected(answered.id, Refusal(RefusalCode.BLURRY, "blurred"))
    store.mark_replied(answered.id)
    photo(other, 14)
    assert store.unanswered_status_messages(patient) == [11, 12]


def test_delivery_sealed_under_another_key_reads_as_none_not_as_garbage(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
    first = JobStore(engine, sealer=Sealer([Fernet.generate_key().decode()]))
    job = first.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY)
    other = JobStore(engine, sealer=Sealer([Fernet.generate_key().decode()]))
    reloaded = other.load(job.id)
    assert reloaded is not None and other.delivery_of(reloaded) is None


def test_the_same_update_records_one_job(store: JobStore) -> None:
    first = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY, update_key="4242:501:a"
    )
    again = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY, update_key="4242:501:a"
    )
    assert again.id == first.id and store.by_update("4242:501:a") is not None
    other = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY, update_key="4242:502:b"
    )
    assert other.id != first.id
    refused = store.record_refused(
        chat_ref="c" * 32,
        media_kind=MediaKind.DOCUMENT,
        file_unique_id="d",
        refusal=Refusal(RefusalCode.NOT_AN_IMAGE, "a pdf"),
        update_key="4242:503:c",
    )
    refused_again = store.record_refused(
        chat_ref="c" * 32,
        media_kind=MediaKind.DOCUMENT,
        file_unique_id="d",
        refusal=Refusal(RefusalCode.NOT_AN_IMAGE, "a pdf"),
        update_key="4242:503:c",
    )
    assert refused_again.id == refused.id


def test_an_update_id_that_starts_again_with_other_content_starts_a_new_job(store: JobStore) -> None:
    """Update ids start again with a new Bot API server: the same id with another content is another photo."""
    old = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", update_key="4242:9:x"
    )
    new = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", update_key="4242:9:y"
    )
    assert new.id != old.id
    reloaded = store.load(old.id)
    assert reloaded is not None and reloaded.update_key == "4242:9:x"


def test_an_overdue_job_is_claimed_once_and_counted(tmp_path: Path) -> None:
    store = store_with(tmp_path, Deadlines(queued_s=0.0, running_s=0.0, questionnaire_s=0.0))
    job = store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY)
    (claimed,) = store.claim_overdue()
    assert (claimed.id, claimed.status, claimed.tries) == (job.id, JobStatus.QUEUED, 1)
    # A second reconciler running at the same moment finds it claimed (its new deadline is in the future
    # with any positive deadline; with 0 s it is due again at once and counted as the next try).
    (again,) = store.claim_overdue()
    assert again.tries == 2
    store.mark_running(job.id)
    store.mark_rejected(job.id, Refusal(RefusalCode.BLURRY, "blurred"))
    store.mark_replied(job.id)
    assert store.claim_overdue() == [], "an answered job is never overdue"


def test_two_concurrent_reconcilers_never_claim_the_same_job(tmp_path: Path) -> None:
    store = store_with(tmp_path, Deadlines(queued_s=60.0))
    jobs = [
        store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id=f"u{i}", delivery=DELIVERY)
        for i in range(20)
    ]
    with Session(store._engine) as session:  # overdue now
        session.exec(update(Job).values(due_at=utc_now() - timedelta(seconds=1)))
        session.commit()
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: store.claim_overdue(), range(4)))
    claimed = [job.id for run in runs for job in run]
    assert sorted(claimed) == sorted(job.id for job in jobs), "each overdue job claimed exactly once"
    assert store.claim_overdue() == [], "the claim set the next deadline"


def test_each_step_sets_when_the_job_is_overdue(tmp_path: Path) -> None:
    deadlines = Deadlines(queued_s=30.0, running_s=50.0, questionnaire_s=120.0)
    store = store_with(tmp_path, deadlines)

    def due_in(job: Job) -> float:
        assert job.due_at is not None
        due = job.due_at if job.due_at.tzinfo else job.due_at.replace(tzinfo=UTC)
        return (due - utc_now()).total_seconds()

    job = store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY)
    assert 25 < due_in(job) <= 30
    assert 45 < due_in(store.mark_running(job.id)) <= 50
    assert 55 < due_in(store.mark_requeued(job.id, retry_in_s=30)) <= 60, "not overdue before its retry"
    store.mark_running(job.id)
    done = store.mark_done(job.id, FixedPrediction(RiskLevel.LOW), image_sha256="0" * 64)
    assert 145 < due_in(done) <= 150, "waits for the questionnaire, then finalize has its time"
    closed = store.record_answers(job.id, PatientAnswers(), close=True)
    assert 25 < due_in(closed) <= 30, "the bot queues the final result now"


def test_the_slow_notice_is_claimed_once_and_only_while_the_analysis_is_pending(tmp_path: Path) -> None:
    store = store_with(tmp_path, Deadlines())
    waiting = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u", delivery=DELIVERY
    )
    analysed = store.record_received(
        chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="v", delivery=DELIVERY
    )
    store.mark_running(analysed.id)
    store.mark_done(analysed.id, FixedPrediction(RiskLevel.LOW), image_sha256="0" * 64)  # waits for the answers
    assert store.claim_slow_notice(waiting_longer_than_s=3600) == [], "not waiting long enough yet"
    assert store.claim_slow_notice(waiting_longer_than_s=0) == [waiting.id]
    assert store.claim_slow_notice(waiting_longer_than_s=0) == [], "once"


@pytest.fixture
def any_store(audit_engine: Engine) -> JobStore:
    return JobStore(audit_engine)


def test_withdrawn_consent_closes_the_patients_jobs_not_analysed_and_nothing_else(any_store: JobStore) -> None:
    store = any_store

    def sent(name: str, chat_ref: str = "c" * 32) -> Job:
        delivery = Delivery(chat_id=1, file_id=name)
        return store.record_received(
            chat_ref=chat_ref, media_kind=MediaKind.PHOTO, file_unique_id=name, delivery=delivery
        )

    queued, running, apology_due, analysed, refused, abandoned = (sent(name) for name in "qrfdxz")
    for job in (running, apology_due, analysed, refused, abandoned):
        store.mark_running(job.id)
    store.mark_failed(apology_due.id, FailureCode.TELEGRAM_UNAVAILABLE, "Telegram away")  # not told yet
    store.mark_failed(abandoned.id, FailureCode.STALLED, "tries ran out")
    store.abandon(abandoned.id)  # the patient could not be reached for a day: its record stands
    store.mark_done(analysed.id, FixedPrediction(RiskLevel.LOW), image_sha256="0" * 64)
    store.mark_rejected(refused.id, Refusal(RefusalCode.BLURRY, "blurry"))
    store.mark_replied(refused.id)
    someone_else = sent("o", chat_ref="e" * 32)

    assert store.close_unanalysed("c" * 32, FailureCode.CONSENT_WITHDRAWN, "consent withdrawn") == 3
    assert store.close_unanalysed("c" * 32, FailureCode.CONSENT_WITHDRAWN, "consent withdrawn") == 0, "once"

    for job in (queued, running, apology_due):
        closed = store.load(job.id)
        assert closed is not None and closed.status == JobStatus.FAILED
        assert closed.error_code == FailureCode.CONSENT_WITHDRAWN
        assert closed.replied_at is None and closed.due_at is not None, "the patient is still to be told"
        with pytest.raises(IllegalTransition):
            store.mark_running(job.id)  # never analysed, whoever takes its message
        with pytest.raises(IllegalTransition):
            store.mark_done(job.id, FixedPrediction(RiskLevel.LOW), image_sha256="1" * 64)  # a worker already at it
    kept = {job.id: store.load(job.id) for job in (analysed, refused, someone_else, abandoned)}
    assert [None if job is None else (job.status, job.error_code) for job in kept.values()] == [
        (JobStatus.DONE, None),
        (JobStatus.REJECTED, RefusalCode.BLURRY),
        (JobStatus.QUEUED, None),
        (JobStatus.FAILED, FailureCode.STALLED),
    ]


def test_a_close_waits_for_a_change_in_flight_and_never_mixes_with_it(any_store: JobStore) -> None:
    """SQLite ignores FOR UPDATE: without the write lock taken before the read, the close would land between a
    worker's read and its write, and the row would end up done with a withdrawal's code."""
    store = any_store
    delivery = Delivery(chat_id=1, file_id="f")
    job = store.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="u1", delivery=delivery)
    store.mark_running(job.id)
    with ThreadPoolExecutor(1) as pool, store._changing(job.id, JobStatus.DONE) as changing:
        closing = pool.submit(store.close_unanalysed, "c" * 32, FailureCode.CONSENT_WITHDRAWN, "consent withdrawn")
        time.sleep(0.5)
        assert not closing.done(), "the close waits for the change to commit"
        changing.finished_at = utc_now()
    assert closing.result(timeout=30) == 0, "it then sees an analysed job, not one to close"
    after = store.load(job.id)
    assert after is not None and after.status == JobStatus.DONE and after.error_code is None
