"""Albums on the job store (a migrated SQLite database): one reply for the photos sent together, sent once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, update

from shared.audit import Job, MediaKind, utc_now
from shared.job_store import JobStore
from shared.labels import CLASS_CODES, CLASS_NAMES, PhotoKind, RiskLevel
from shared.texts.result import MAX_MESSAGE_LENGTH, AlbumPhoto, PatientResult, album_result


@pytest.fixture
def jobs(audit_engine: Engine) -> JobStore:
    return JobStore(audit_engine)


def test_an_albums_reply_is_claimed_once_and_can_be_released_for_a_retry(jobs: JobStore) -> None:
    album = [
        jobs.record_received(
            chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id=f"u{i}", album_id="a" * 32, album_position=p
        )
        for i, p in enumerate((12, 10, 11))  # recorded in another order than sent (concurrent updates)
    ]
    alone = jobs.record_received(chat_ref="c" * 32, media_kind=MediaKind.PHOTO, file_unique_id="alone")
    assert all(job.answers_closed_at is not None for job in album), "an album asks no questions"
    assert alone.answers_closed_at is None
    assert [job.id for job in jobs.album("a" * 32)] == [album[1].id, album[2].id, album[0].id], "in the order sent"

    claimed = jobs.claim_album_reply("a" * 32)
    assert sorted(claimed) == sorted(job.id for job in album)
    assert jobs.claim_album_reply("a" * 32) == [], "the second worker to finish gets nothing to send"
    jobs.release_album_claim(claimed)
    assert sorted(jobs.claim_album_reply("a" * 32)) == sorted(claimed), "a failed send is sent again on retry"
    loaded = jobs.load(alone.id)
    assert loaded is not None and loaded.replied_at is None, "other jobs untouched"


def test_an_albums_reply_claimed_by_a_worker_that_died_before_sending_goes_back_to_the_reconciler(
    jobs: JobStore,
) -> None:
    album = [
        jobs.record_received(
            chat_ref="d" * 32, media_kind=MediaKind.PHOTO, file_unique_id=f"v{i}", album_id="b" * 32, album_position=i
        )
        for i in range(2)
    ]
    claimed = jobs.claim_album_reply("b" * 32)
    assert sorted(claimed) == sorted(job.id for job in album)
    assert jobs.claim_overdue() == [], "a reply in flight is not overdue"
    # The worker died between its claim and the send: once the claim's deadline passed, the reconciler has them.
    with Session(jobs._engine) as session:
        session.exec(update(Job).where(col(Job.album_id) == "b" * 32).values(due_at=utc_now() - timedelta(seconds=1)))
        session.commit()
    overdue = jobs.claim_overdue()
    assert sorted(job.id for job in overdue) == sorted(claimed)
    assert all(job.replied_at is None for job in jobs.album("b" * 32)), "released: the next try replies"
    assert sorted(jobs.claim_album_reply("b" * 32)) == sorted(claimed)
    jobs.album_replied(claimed)
    assert all(job.due_at is None and job.replied_at is not None for job in jobs.album("b" * 32))
    assert jobs.claim_overdue() == [], "answered: nothing due"


def test_a_ten_photo_album_is_split_under_telegrams_length_limit() -> None:
    ranking = [{"code": code, "name": CLASS_NAMES[code], "probability": 1 / 7} for code in CLASS_CODES]
    view = PatientResult(ranking, RiskLevel.HIGH, True, PhotoKind.CLINICAL, 3.3)
    texts = album_result([AlbumPhoto(number, result=view) for number in range(1, 11)])
    assert len(texts) > 1 and all(len(text) <= MAX_MESSAGE_LENGTH for text in texts)
    joined = "\n\n".join(texts)
    assert all(f"Photo {number}:" in joined for number in range(1, 11)) and joined.count("screening aid") == 1
