"""The job store's typed transitions on a real (migrated) SQLite audit database."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from models.inference import Classifier
from models.screening import screen_photo
from shared.audit import Job, JobStatus, MediaKind
from shared.job_store import IllegalTransition, JobStore
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import FailureCode, Refusal, RefusalCode
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
