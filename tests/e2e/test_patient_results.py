"""What the patient gets back, end to end on the real stack (sandbox, bot process, redis-server, a prefork
Celery worker, SQLite): the result's wording, /about, /history and /delete."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlmodel import Session, select

from models.serving.explain import CHART_WIDTH, PANEL
from models.serving.inference import ARTIFACT_DIR, Classifier
from models.serving.screening import screen_photo
from models.training.data import image_path
from shared.audit import Consent, Job, JobStatus, PatientProfile, chat_reference
from shared.images import UnreadableImage
from shared.labels import MELANOMA, MelanomaFinding
from shared.retention import PURGED_CHAT_REF
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts import result as result_texts
from skinsense.sandbox import plain_text
from tests.auxil.patient import (
    answer_questionnaire,
    consent,
    questionnaire_for,
    send_photo_skipping_questions,
    skip_questionnaire,
)
from tests.auxil.services import wait_until
from tests.auxil.stack import BOT_TOKEN, CHAT_HASH_KEY, CLINICIANS, RunningStack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("results")
    with running_stack(redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir) as running:
        yield running


@pytest.fixture(scope="module")
def alert_photos(data_dir: Path, classifier: Classifier) -> dict[MelanomaFinding, Path]:
    """Validation photos (never trained on) on which the shipped model raises the melanoma alert, one led by
    melanoma and one led by another class: chosen by the model itself, not hard-coded."""
    from models.training.validation_data import validation_samples  # training-side code: only where needed

    chosen: dict[MelanomaFinding, Path] = {}
    for sample in validation_samples(data_dir, ARTIFACT_DIR):
        path = image_path(data_dir, sample)
        try:
            prediction = screen_photo(path.read_bytes(), classifier)
        except UnreadableImage:
            continue
        chosen.setdefault(prediction.melanoma_finding, path)
        if MelanomaFinding.LIKELY in chosen and MelanomaFinding.CANNOT_RULE_OUT in chosen:
            return chosen
    pytest.fail("the validation split has no alert led by melanoma, or none led by another class")


def answered_job(stack: RunningStack, file_unique_id: str) -> Job:
    def find() -> Job | None:
        with Session(stack.engine) as session:
            job = session.exec(select(Job).where(Job.telegram_file_unique_id == file_unique_id)).first()
        return job if job is not None and job.replied_at is not None else None

    return wait_until(find, 90, what="the job to be answered")


def bot_message_after(stack: RunningStack, chat: int, message_id: int, starting: str = "") -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for message in stack.user.bot_messages(chat):
            if message["message_id"] > message_id and message.get("text", "").startswith(starting):
                return message
        return None

    return wait_until(find, 60, what=f"a bot message starting {starting!r}")


@pytest.mark.parametrize("finding", [MelanomaFinding.LIKELY, MelanomaFinding.CANNOT_RULE_OUT])
def test_an_alert_reads_as_the_policy_says_with_plain_names_advice_and_reliability(
    stack: RunningStack, alert_photos: dict[MelanomaFinding, Path], classifier: Classifier, finding: MelanomaFinding
) -> None:
    chat = 3100 if finding == MelanomaFinding.LIKELY else 3101
    sent = send_photo_skipping_questions(stack.user, chat, alert_photos[finding].read_bytes())
    text = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)["text"]
    job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.ranking is not None and job.photo_kind is not None
    assert text == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML"), stack.logs()
    headline = text.splitlines()[0]
    if finding == MelanomaFinding.LIKELY:
        assert job.ranking[0]["code"] == MELANOMA
        assert headline == "⚠️ Signs of melanoma" and "cannot be ruled out" not in text
    else:
        assert job.ranking[0]["code"] != MELANOMA
        assert headline == "⚠️ Melanoma cannot be ruled out" and "Signs of melanoma" not in text
        assert f"The most likely type is {result_texts.lesion_name(job.ranking[0]['code'])}" in text
    assert result_texts.lesion_name(job.ranking[0]["code"]) in text, "the everyday name, then the medical one"
    assert "Risk: HIGH." in text and "dermatologist" in text and "urgent care" in text
    measured = classifier.metadata.kinds[job.photo_kind].malignant_told_low_per_100
    assert f"misses about {round(measured)} in 100 skin cancers" in text, "the figure from the artifact"
    seen = result_texts.PHOTO_KIND_UNSURE if job.other_kind_risk is not None else result_texts.PHOTO_KIND_SEEN
    assert seen[job.photo_kind] in text, "how the photo was read, and whether its kind was certain"
    assert text.count("not a diagnosis") == 1 + (finding == MelanomaFinding.LIKELY) and text.endswith("/about")

    picture = explanation_picture_after(stack, chat, sent["message_id"])
    assert picture.format == "JPEG" and picture.size == (PANEL + CHART_WIDTH, PANEL)
    picture.load()  # the whole image decodes


def explanation_picture_after(stack: RunningStack, chat: int, photo_message_id: int) -> Image.Image:
    """The explanation picture the bot sent after its result for a photo, downloaded as the patient would."""
    result = stack.user.wait_for_reply(chat, photo_message_id, timeout_s=90)

    def sent() -> dict[str, Any] | None:
        return next(
            (m for m in stack.user.bot_messages(chat) if m["message_id"] > result["message_id"] and m.get("photo")),
            None,
        )

    message = wait_until(sent, 60, what="the explanation picture")
    http = stack.user.http
    described = http.get(f"/bot{BOT_TOKEN}/getFile", params={"file_id": message["photo"][-1]["file_id"]}).json()
    return Image.open(io.BytesIO(http.get(f"/file/bot{BOT_TOKEN}/{described['result']['file_path']}").content))


def test_the_answers_that_moved_the_risk_are_named(stack: RunningStack, phone_photo: Path) -> None:
    chat = 3102
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, phone_photo.read_bytes())  # the answers combine with phone photos only
    taps = ["70-79", "Male", "Back", "Yes", "Yes", "Yes", "No", "No", "Yes"]  # grew, changed and bleeds
    answer_questionnaire(stack.user, chat, sent["message_id"], taps)
    text = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)["text"]
    job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.answer_effects, "the worker worked out which answers moved the risk"
    assert "Raised the risk:" in text or "Lowered it:" in text
    assert text == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")


def test_about_answers_before_consent_with_the_full_disclaimer(stack: RunningStack) -> None:
    chat = 3103
    sent = stack.user.send_text(chat, "/about")
    about = bot_message_after(stack, chat, sent["message_id"], "About SkinSense")
    assert about["text"] == plain_text(patient_texts.ABOUT, "HTML") and patient_texts.DISCLAIMER in about["text"]
    assert "reply_markup" not in about, "no consent question for /about"


def rows_about(stack: RunningStack, chat: int) -> list[object]:
    chat_ref = chat_reference(chat, CHAT_HASH_KEY)
    with Session(stack.engine) as session:
        jobs: list[object] = list(session.exec(select(Job).where(Job.chat_ref == chat_ref)).all())
        consents = list(session.exec(select(Consent).where(Consent.chat_ref == chat_ref)).all())
        profiles = list(session.exec(select(PatientProfile).where(PatientProfile.chat_ref == chat_ref)).all())
    return [*jobs, *consents, *profiles]


def test_history_lists_results_and_delete_erases_them_for_good(
    stack: RunningStack, alert_photos: dict[MelanomaFinding, Path], photos_by_risk: dict[str, Path]
) -> None:
    chat = 3104
    sent_ids = []
    for path in (photos_by_risk["low"], alert_photos[MelanomaFinding.LIKELY]):
        sent = send_photo_skipping_questions(stack.user, chat, path.read_bytes())
        stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)
        sent_ids.append(answered_job(stack, sent["photo"][-1]["file_unique_id"]).id)

    command = stack.user.send_text(chat, "/history")
    listing = bot_message_after(stack, chat, command["message_id"], "Your results")
    lines = listing["text"].splitlines()
    assert lines[1].startswith("1. ") and "HIGH risk" in lines[1], "newest first"
    assert lines[2].startswith("2. ") and "LOW risk" in lines[2] and len(lines) == 3
    assert "dermatoscope photo" in lines[1] or "phone photo" in lines[1]
    stack.user.tap(chat, listing["message_id"], "2")
    full = bot_message_after(stack, chat, listing["message_id"], "Your result for the photo you sent on")
    with Session(stack.engine) as session:
        oldest = session.get(Job, sent_ids[0])
    assert oldest is not None
    assert full["text"] == plain_text(
        result_texts.past_result(oldest.received_at, result_texts.PatientResult.of_job(oldest)), "HTML"
    )

    command = stack.user.send_text(chat, "/delete")
    question = stack.user.wait_for_button(chat, patient_texts.DELETE_CONFIRM_BUTTON, after_id=command["message_id"])
    assert "2 analyses" in question["text"] and rows_about(stack, chat), "nothing erased before the tap"
    stack.user.tap(chat, question["message_id"], patient_texts.DELETE_CONFIRM_BUTTON)
    stack.user.wait_for_text(chat, question["message_id"], patient_texts.DELETED.format(jobs=2))
    assert rows_about(stack, chat) == [], "answers, results, consent and remembered age/sex are gone"
    with Session(stack.engine) as session:
        tombstones = [session.get(Job, job_id) for job_id in sent_ids]
    for tombstone in tombstones:
        assert tombstone is not None and tombstone.chat_ref == PURGED_CHAT_REF and tombstone.status == JobStatus.DONE
        assert tombstone.ranking is None and tombstone.photo_ranking is None and tombstone.answers is None
        assert tombstone.image_sha256 is None and tombstone.telegram_file_unique_id is None
        assert tombstone.received_at is not None and tombstone.replied_at is not None, "times and outcome stay"

    command = stack.user.send_text(chat, "/history")
    empty = bot_message_after(stack, chat, command["message_id"], result_texts.HISTORY_EMPTY)
    assert "reply_markup" not in empty
    stack.user.tap(chat, listing["message_id"], "1")  # an old button, after the erasure
    bot_message_after(stack, chat, empty["message_id"], result_texts.HISTORY_GONE)


def test_keep_my_data_erases_nothing(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 3105
    sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["low"].read_bytes())
    stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)
    command = stack.user.send_text(chat, "/delete")
    question = stack.user.wait_for_button(chat, patient_texts.DELETE_CANCEL_BUTTON, after_id=command["message_id"])
    stack.user.tap(chat, question["message_id"], patient_texts.DELETE_CANCEL_BUTTON)
    stack.user.wait_for_text(chat, question["message_id"], patient_texts.DELETE_CANCELLED)
    assert len([row for row in rows_about(stack, chat) if isinstance(row, Job)]) == 1


def test_history_and_delete_answer_a_patient_who_never_consented(stack: RunningStack) -> None:
    chat = 3106
    command = stack.user.send_text(chat, "/history")
    bot_message_after(stack, chat, command["message_id"], result_texts.HISTORY_EMPTY)
    command = stack.user.send_text(chat, "/delete")
    question = stack.user.wait_for_button(chat, patient_texts.DELETE_CONFIRM_BUTTON, after_id=command["message_id"])
    assert "0 analyses" in question["text"]
    assert not [
        m for m in stack.user.bot_messages(chat) if patient_texts.CONSENT_AGREE_BUTTON in str(m.get("reply_markup"))
    ]


def test_an_iphone_heic_file_is_analysed(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 3107
    consent(stack.user, chat)
    heic = io.BytesIO()
    Image.open(photos_by_risk["low"]).save(heic, "HEIF", quality=95)
    sent = stack.user.send_document(chat, heic.getvalue(), "IMG_0042.HEIC", "image/heic")
    skip_questionnaire(stack.user, chat, sent["message_id"])
    text = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)["text"]
    assert result_texts.RANKING_HEADING in text, stack.logs()
    job = answered_job(stack, sent["document"]["file_unique_id"])
    assert job.status == JobStatus.DONE and text == plain_text(
        result_texts.result(result_texts.PatientResult.of_job(job)), "HTML"
    )
    assert explanation_picture_after(stack, chat, sent["message_id"]).format == "JPEG"


def test_the_same_photo_again_gets_its_earlier_result_said_to_be_the_same_photo(
    stack: RunningStack, alert_photos: dict[MelanomaFinding, Path]
) -> None:
    chat = 3108
    data = alert_photos[MelanomaFinding.CANNOT_RULE_OUT].read_bytes()
    first = send_photo_skipping_questions(stack.user, chat, data)
    first_text = stack.user.wait_for_reply(chat, first["message_id"], timeout_s=90)["text"]
    first_job = answered_job(stack, first["photo"][-1]["file_unique_id"])

    again = stack.user.send_photo(chat, data)
    text = stack.user.wait_for_reply(chat, again["message_id"], timeout_s=90)["text"]
    job = answered_job(stack, again["photo"][-1]["file_unique_id"])
    assert job.same_photo_as == first_job.id and job.image_sha256 == first_job.image_sha256
    assert text.startswith(f"You sent this same photo on {result_texts.sent_on(first_job.received_at)}.")
    assert text.endswith(first_text), "the earlier result, word for word"
    assert (job.ranking, job.risk, job.melanoma_alert) == (first_job.ranking, first_job.risk, first_job.melanoma_alert)
    assert explanation_picture_after(stack, chat, again["message_id"]).format == "JPEG"
    for clinician in CLINICIANS:  # told about the first one; the same photo again is not a new case
        assert not [m for m in stack.user.bot_messages(clinician) if str(job.id) in m.get("caption", "")]


def not_a_lesion_png() -> bytes:
    page = Image.new("L", (640, 480), 235)
    page.paste(20, (50, 50, 590, 70))
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_album_gets_one_combined_reply_and_a_picture_per_analysed_photo(
    stack: RunningStack, alert_photos: dict[MelanomaFinding, Path], photos_by_risk: dict[str, Path]
) -> None:
    chat = 3109
    consent(stack.user, chat)
    photos = [photos_by_risk["low"].read_bytes(), alert_photos[MelanomaFinding.LIKELY].read_bytes(), not_a_lesion_png()]
    sent = [stack.user.send_photo(chat, data, media_group_id="album-3109") for data in photos]

    def combined() -> dict[str, Any] | None:
        return next((m for m in stack.user.bot_messages(chat) if m.get("text", "").startswith("Your 3 photos")), None)

    reply = wait_until(combined, 120, what="the album's one reply")
    text = reply["text"]
    assert reply.get("reply_to_message", {}).get("message_id") in {m["message_id"] for m in sent}
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("Photo ")] == [
        "Photo 1",
        "Photo 2",
        "Photo 3",
    ]
    assert "Photo 3: Sorry, I cannot analyse this photo." in text, "the refused photo is in the same reply"
    assert text.count(result_texts.SHORT_DISCLAIMER) == 1 and "What to do" in text and "Risk: HIGH." in text
    after_photos = [m for m in stack.user.bot_messages(chat) if m["message_id"] > sent[0]["message_id"]]
    texts = [m for m in after_photos if "text" in m]
    assert texts == [reply], "one message for the album: no questionnaire, no reply per photo"
    assert reply["edits"], "the album's 'analysing...' message became its reply"
    pictures = [m for m in after_photos if m.get("photo")]
    assert sorted(m["caption"].split(".")[0] for m in pictures) == ["Photo 1", "Photo 2"], "one per analysed photo"
    with Session(stack.engine) as session:
        jobs = session.exec(select(Job).where(Job.chat_ref == chat_reference(chat, CHAT_HASH_KEY))).all()
    assert len(jobs) == 3 and len({job.album_id for job in jobs}) == 1 and jobs[0].album_id
    assert all(job.replied_at is not None for job in jobs)
    assert sorted(job.status for job in jobs) == sorted([JobStatus.DONE, JobStatus.DONE, JobStatus.REJECTED])


def test_an_album_photo_recorded_after_the_albums_reply_gets_its_own_message_and_hides_nothing(
    stack: RunningStack, alert_photos: dict[MelanomaFinding, Path], photos_by_risk: dict[str, Path]
) -> None:
    chat = 3190
    consent(stack.user, chat)
    first = stack.user.send_photo(chat, alert_photos[MelanomaFinding.LIKELY].read_bytes(), media_group_id="late-3190")

    def reply_starting(heading: str) -> dict[str, Any] | None:
        return next((m for m in stack.user.bot_messages(chat) if m.get("text", "").startswith(heading)), None)

    answered = wait_until(lambda: reply_starting("Your photo\n"), 120, what="the album's reply")
    late = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes(), media_group_id="late-3190")
    later_heading = plain_text(result_texts.ALBUM_LATER_HEADING, "HTML")
    more = wait_until(lambda: reply_starting(later_heading), 120, what="the late photo's reply")
    assert more["message_id"] > late["message_id"] and "Photo 2:" in more["text"] and "Photo 1" not in more["text"]
    assert more["reply_to_message"]["message_id"] == answered["message_id"], "under the album's reply"
    (status,) = [m for m in stack.user.bot_messages(chat) if m["message_id"] == answered["message_id"]]
    assert status["text"] == answered["text"] and "Risk: HIGH." in status["text"], "the first result still shows"
    assert first["message_id"] < answered["message_id"]


def test_delete_during_an_analysis_closes_it_and_no_result_follows(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 3110
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    questions = questionnaire_for(stack.user, chat, sent["message_id"])  # open: the result waits for it
    status = stack.user.wait_for_reply(chat, sent["message_id"], final=False)
    command = stack.user.send_text(chat, "/delete")
    question = stack.user.wait_for_button(chat, patient_texts.DELETE_CONFIRM_BUTTON, after_id=command["message_id"])
    stack.user.tap(chat, question["message_id"], patient_texts.DELETE_CONFIRM_BUTTON)
    stack.user.wait_for_text(chat, question["message_id"], patient_texts.DELETED.format(jobs=1))
    stack.user.wait_for_text(chat, status["message_id"], patient_texts.ERASED_IN_PROGRESS)
    stack.user.wait_for_text(chat, questions["message_id"], questionnaire_texts.QUESTIONNAIRE_CLOSED)
    assert rows_about(stack, chat) == []
    time.sleep(2.0)  # a worker that wrongly went on would have answered by now (the questionnaire's timeout aside)
    texts = [m.get("text", "") for m in stack.user.bot_messages(chat)]
    assert not [t for t in texts if result_texts.RANKING_HEADING in t], "no result after the erasure"
