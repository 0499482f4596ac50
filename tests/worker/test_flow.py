"""The classification flow in this process, against the real Bot API sandbox, a real (migrated) SQLite audit
database, the real model and the tests' own Redis: fast enough to run on every change."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from PIL import Image
from sqlmodel import Session, col, update
from telegram.error import RetryAfter

from models.serving.explain import CHART_WIDTH, PANEL
from models.serving.inference import Classifier
from models.serving.screening import screen_photo
from shared.answers import BodySite, PatientAnswers, Sex
from shared.audit import Consent, ConsentDecision, Job, JobStatus, MediaKind, utc_now
from shared.clinic.store import AlertStore
from shared.config import Settings
from shared.db import build_engine
from shared.images import UnreadableImage
from shared.job_store import Delivery, JobStore, asks_no_questions
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import FailureCode, RefusalCode
from shared.queue import (
    CLINICIANS_QUEUE,
    ClassifyPhotoRequest,
    FinalizeResultRequest,
    NotifyCliniciansRequest,
    create_celery_app,
    enqueue_clinician_alert,
)
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts import result as result_texts
from shared.texts.patient import MAX_FILE_MB, PRIVACY_VERSION
from skinsense.sandbox import plain_text
from tests.auxil.database import migrated_engine
from tests.auxil.sandbox_user import SandboxUser, running_sandbox
from worker import replies
from worker.clinician_alerts import ClinicianAlertSender
from worker.flow import (
    ALBUM_ANSWERED,
    ALBUM_WAITING,
    AWAITING_ANSWERS,
    MAX_DELIVERY_ATTEMPTS,
    ClassificationFlow,
    OtherModelVersion,
    patient_text,
)
from worker.reconciler import APOLOGY_TRIES, Reconciler
from worker.replies import explanation_caption
from worker.telegram import TelegramClient

TOKEN = "6262:flow-test-token"
CLINICIANS = (9101, 9102)
PATIENT = "f" * 32  # the chat reference of every job here


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxUser]:
    with running_sandbox(TOKEN, tmp_path_factory.mktemp("flow-sandbox")) as user:
        yield user


@pytest.fixture(scope="module")
def telegram(sandbox: SandboxUser, redis_url: str) -> Iterator[TelegramClient]:
    settings = Settings(telegram_token=TOKEN, telegram_api_url=sandbox.api_url, redis_url=redis_url)  # type: ignore[arg-type]
    client = TelegramClient.open(settings)
    yield client
    client.close()


@pytest.fixture
def awaited() -> list[FinalizeResultRequest]:
    """The finalizations the flow queued for later (the questionnaire's timeout)."""
    return []


@pytest.fixture
def flow(
    telegram: TelegramClient,
    classifier: Classifier,
    tmp_path: Path,
    redis_url: str,
    awaited: list[FinalizeResultRequest],
) -> ClassificationFlow:
    broker = create_celery_app(Settings(redis_url=redis_url))
    redis.Redis.from_url(redis_url).delete(CLINICIANS_QUEUE)
    engine = migrated_engine(f"sqlite:///{tmp_path / 'flow.sqlite3'}")
    with Session(engine) as session:  # the patient agreed (the bot records no job before): their answers are kept
        session.add(Consent(chat_ref=PATIENT, text_version=PRIVACY_VERSION, decision=ConsentDecision.AGREED))
        session.commit()
    return ClassificationFlow(
        telegram=telegram,
        classifier=classifier,
        jobs=JobStore(engine),
        clinician_chat_ids=CLINICIANS,
        alert_clinicians=lambda request: enqueue_clinician_alert(request, broker),
        await_answers=awaited.append,
    )


def patient_sends(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    chat: int,
    data: bytes,
    *,
    skips_questions: bool = True,
    file_id: str | None = None,
) -> ClassifyPhotoRequest:
    """What the bot does for a photo: the job row with its (sealed) delivery data, the "analysing..." message,
    the request (the job id only); and, unless told otherwise, the patient skips the questionnaire before the
    analysis starts. ``file_id``: instead of the photo's."""
    sent = sandbox.send_photo(chat, data)
    job = flow.jobs.record_received(
        chat_ref=PATIENT,
        media_kind=MediaKind.PHOTO,
        file_unique_id=sent["photo"][-1]["file_unique_id"],
        delivery=Delivery(chat_id=chat, file_id=file_id or sent["photo"][-1]["file_id"]),
    )
    if skips_questions:
        flow.jobs.record_answers(job.id, PatientAnswers(), close=True)
    flow.jobs.set_status_message(job.id, flow.telegram.send_text(chat, patient_texts.ANALYSING))
    return ClassifyPhotoRequest(job_id=job.id)


def status_message_id(sandbox: SandboxUser, chat: int) -> int:
    """The chat's "Analysing..." message (the first the bot sent there)."""
    return int(sandbox.bot_messages(chat)[0]["message_id"])


def answer(sandbox: SandboxUser, chat: int) -> str:
    """The bot's last text in the chat (the result, refusal or apology; an explanation picture may follow)."""
    return str([m for m in sandbox.bot_messages(chat) if "text" in m][-1]["text"])


def pictures(sandbox: SandboxUser, chat: int) -> list[Image.Image]:
    """The photos the bot sent to the chat (explanation pictures), downloaded as the patient would."""
    found: list[Image.Image] = []
    for message in sandbox.bot_messages(chat):
        if message.get("photo"):
            found.append(Image.open(io.BytesIO(download(sandbox, message["photo"][-1]["file_id"]))))
    return found


def download(sandbox: SandboxUser, file_id: str) -> bytes:
    described = sandbox.http.get(f"/bot{TOKEN}/getFile", params={"file_id": file_id}).json()["result"]
    return sandbox.http.get(f"/file/bot{TOKEN}/{described['file_path']}").content


def queued_alerts(redis_url: str) -> list[NotifyCliniciansRequest]:
    raw = redis.Redis.from_url(redis_url).lrange(CLINICIANS_QUEUE, 0, -1)
    return [
        NotifyCliniciansRequest.model_validate(json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]) for m in raw
    ]


def test_a_low_risk_photo_gets_its_result_and_no_alert(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path], redis_url: str
) -> None:
    request = patient_sends(sandbox, flow, 2001, photos_by_risk["low"].read_bytes())
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.replied_at is not None and job.ranking is not None and job.risk is not None
    assert answer(sandbox, 2001) == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")
    assert job.photo_kind is not None
    measured = flow.classifier.metadata.kinds[PhotoKind(job.photo_kind)].malignant_told_low_per_100
    assert job.malignant_told_low_per_100 == measured and f"about {round(measured)} in 100" in answer(sandbox, 2001)
    (picture,) = pictures(sandbox, 2001)
    assert picture.format == "JPEG" and picture.size == (PANEL + CHART_WIDTH, PANEL), "the explanation picture"
    messages_in_order = sandbox.bot_messages(2001)
    assert "text" in messages_in_order[-2] and messages_in_order[-1].get("photo"), "the picture follows the result"
    assert messages_in_order[-1]["caption"] == plain_text(explanation_caption(job), "HTML")
    actions = [c["parameters"] for c in sandbox.calls("sendChatAction")]
    assert {"chat_id": 2001, "action": "upload_photo"} in [
        {"chat_id": int(a["chat_id"]), "action": a["action"]} for a in actions
    ], "the patient sees the picture being prepared"
    assert queued_alerts(redis_url) == []


@pytest.fixture(scope="module")
def photo_of_darker_skin(phone_data_root: Path, classifier: Classifier) -> Path:
    """A PAD-UFES-20 phone photo the model tells LOW on its own, whose skin looks darker than the phone photos
    SkinSense was measured on (so it is told MEDIUM); chosen by the model and the skin-tone estimate, not
    hard-coded."""
    for path in sorted((phone_data_root / "pad_ufes" / "images").glob("*.jpg")):
        try:
            prediction = screen_photo(path.read_bytes(), classifier)
        except UnreadableImage:
            continue
        if prediction.raised_by_skin_tone:
            return path
    pytest.fail("no PAD-UFES-20 photo is told MEDIUM for its skin tone")


def test_a_photo_of_skin_darker_than_measured_on_is_never_low_says_so_and_its_job_keeps_the_skin_tone(
    sandbox: SandboxUser, flow: ClassificationFlow, photo_of_darker_skin: Path
) -> None:
    data = photo_of_darker_skin.read_bytes()
    skin_tone = screen_photo(data, flow.classifier).skin_tone
    assert skin_tone is not None and skin_tone.outside_measured_range
    # The questionnaire closed first: the result is decided again with the answers, from what the job stored.
    request = patient_sends(sandbox, flow, 2011, data)
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.answers_used is not None, "finalized"
    assert (job.skin_tone_ita, job.skin_tone_caveat, job.raised_by_skin_tone) == (skin_tone.ita, True, True)
    assert job.risk == RiskLevel.MEDIUM
    text = answer(sandbox, 2011)
    assert text == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")
    assert result_texts.SKIN_TONE_LESS_CERTAIN in text and "does not call this spot low risk" in text


def test_a_high_risk_photo_queues_one_alert_and_each_clinician_is_told_once(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    telegram: TelegramClient,
    photos_by_risk: dict[str, Path],
    redis_url: str,
    tmp_path: Path,
) -> None:
    request = patient_sends(sandbox, flow, 2002, photos_by_risk["alert"].read_bytes())
    flow.classify_and_reply(request)
    (alert,) = queued_alerts(redis_url)
    assert alert.job_id == request.job_id
    alerts = ClinicianAlertSender(
        telegram, AlertStore(build_engine(f"sqlite:///{tmp_path / 'flow.sqlite3'}")), CLINICIANS, max_wait_s=10
    )
    assert alerts.notify_clinicians(alert.job_id) == len(CLINICIANS)
    assert alerts.notify_clinicians(alert.job_id) == 0, "a retried alert skips clinicians already told"
    for clinician in CLINICIANS:
        (forwarded,) = [m for m in sandbox.bot_messages(clinician) if str(request.job_id) in m.get("text", "")]
        assert forwarded["reply_to_message"]["photo"] and "MELANOMA ALERT" in forwarded["text"]


def test_a_high_risk_result_whose_alert_cannot_be_queued_is_still_answered_and_its_outbox_row_kept(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    def broker_down(request: NotifyCliniciansRequest) -> None:
        raise ConnectionError("the broker is away")

    offline = dataclasses.replace(flow, alert_clinicians=broker_down)
    request = patient_sends(sandbox, offline, 2010, photos_by_risk["alert"].read_bytes())
    assert offline.classify_and_reply(request) == JobStatus.DONE.value, (
        "the finished result is not turned into a failure"
    )
    assert "MELANOMA" in answer(sandbox, 2010) or "melanoma" in answer(sandbox, 2010)
    store = AlertStore(build_engine(f"sqlite:///{tmp_path / 'flow.sqlite3'}"))
    assert store.unsent_jobs() == [request.job_id], "beat's sweep finds it and sends it"


def test_a_redelivered_request_is_answered_once(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    request = patient_sends(sandbox, flow, 2003, photos_by_risk["low"].read_bytes())
    flow.classify_and_reply(request)
    assert flow.classify_and_reply(request) == "duplicate"
    status_id = status_message_id(sandbox, 2003)
    edits = [c for c in sandbox.calls("editMessageText") if int(c["parameters"]["message_id"]) == status_id]
    assert len(edits) == 1


def test_flood_control_on_the_reply_is_waited_out_and_the_reply_sent_once(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    request = patient_sends(sandbox, flow, 2004, photos_by_risk["low"].read_bytes())
    sandbox.inject_fault("editMessageText", count=1, retry_after=2)
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    status_id = status_message_id(sandbox, 2004)
    edits = [c for c in sandbox.calls("editMessageText") if int(c["parameters"]["message_id"]) == status_id]
    assert [c.get("fault") for c in edits] == ["429", None]
    assert edits[1]["time"] - edits[0]["time"] >= 2.0, "retry_after is honoured"
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.delivery_attempts == 1 and job.replied_at is not None


def test_flood_control_past_the_limiters_patience_is_raised_for_the_task_and_the_retry_does_not_analyse_again(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    request = patient_sends(sandbox, flow, 2008, photos_by_risk["low"].read_bytes())
    flow.telegram.limiter.max_flood_waits = 0  # the limiter gives up at once: the Celery task retries instead
    try:
        sandbox.inject_fault("editMessageText", count=1, retry_after=1)
        with pytest.raises(RetryAfter):
            flow.classify_and_reply(request)
    finally:
        flow.telegram.limiter.max_flood_waits = 10
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.status == JobStatus.DONE and job.replied_at is None
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.delivery_attempts == 1 and job.replied_at is not None


@pytest.mark.parametrize("kind", ["429", "5xx", "drop"])
def test_faults_on_get_file_or_the_download_are_retried_and_the_photo_analysed(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path], kind: str
) -> None:
    chat = {"429": 2005, "5xx": 2009, "drop": 2010}[kind]
    request = patient_sends(sandbox, flow, chat, photos_by_risk["low"].read_bytes())
    sandbox.inject_fault("getFile", count=1, retry_after=1, kind=kind)
    sandbox.inject_fault("download", count=2, retry_after=1, kind=kind)
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    assert result_texts.RANKING_HEADING in answer(sandbox, chat)
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.status == JobStatus.DONE and job.error_code is None


def test_a_photo_that_is_not_a_lesion_is_refused_with_its_text(sandbox: SandboxUser, flow: ClassificationFlow) -> None:
    page = Image.new("L", (640, 480), 235)
    page.paste(20, (50, 50, 590, 70))
    data = io.BytesIO()
    page.save(data, "PNG")
    request = patient_sends(sandbox, flow, 2006, data.getvalue())
    assert flow.classify_and_reply(request) == JobStatus.REJECTED.value
    assert answer(sandbox, 2006) == patient_texts.rejection(RefusalCode.NOT_A_LESION, MAX_FILE_MB, "this photo")
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.error_code is RefusalCode.NOT_A_LESION and job.image_sha256


def test_an_unknown_file_is_refused_as_download_failed(sandbox: SandboxUser, flow: ClassificationFlow) -> None:
    request = patient_sends(sandbox, flow, 2007, b"\xff", file_id="no-such-file")
    assert flow.classify_and_reply(request) == JobStatus.REJECTED.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.error_code is RefusalCode.DOWNLOAD_FAILED


def test_a_photo_that_killed_its_workers_is_failed_with_an_apology(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    request = patient_sends(sandbox, flow, 2008, photos_by_risk["low"].read_bytes())
    for _ in range(MAX_DELIVERY_ATTEMPTS):
        flow.jobs.mark_running(request.job_id)  # each start whose worker process then died
    assert flow.classify_and_reply(request) == JobStatus.FAILED.value
    assert answer(sandbox, 2008) == patient_texts.failure(FailureCode.WORKER_LOST)
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.error_code is FailureCode.WORKER_LOST and job.replied_at is not None


def test_a_job_missing_from_the_audit_database_is_dropped(flow: ClassificationFlow) -> None:
    assert flow.classify_and_reply(ClassifyPhotoRequest(job_id=uuid.uuid4())) == "missing"


EVERY_ANSWER = PatientAnswers(
    age=65,
    sex=Sex.MALE,
    body_site=BodySite.BACK,
    grew=True,
    changed=True,
    bleeds=True,
    itches=False,
    hurts=False,
    raised=True,
)


def test_a_skipped_questionnaire_gives_the_photo_only_ranking(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    awaited: list[FinalizeResultRequest],
) -> None:
    data = photos_by_risk["low"].read_bytes()
    request = patient_sends(sandbox, flow, 2101, data)
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    assert awaited == [], "the questionnaire closed first: no timeout to wait for"
    job = flow.jobs.load(request.job_id)
    photo_only = screen_photo(data, flow.classifier).to_dict()["ranking"]
    assert job is not None and job.ranking == job.photo_ranking == photo_only and job.answers_used == []


def test_an_analysis_that_ends_first_waits_for_the_answers_and_then_combines_them(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    awaited: list[FinalizeResultRequest],
) -> None:
    request = patient_sends(sandbox, flow, 2102, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    assert answer(sandbox, 2102) == patient_texts.ANALYSING, "no reply before the answers"
    assert [r.job_id for r in awaited] == [request.job_id], "the timeout is queued"
    flow.jobs.record_answers(request.job_id, EVERY_ANSWER, close=True)  # the bot, at the last answer
    kept = flow.kept_photos.take(request.job_id)  # as if another process finalized it
    assert kept is not None and kept.feature_map is not None, "kept with its feature map, for its picture"
    assert flow.finalize(awaited[0]) == JobStatus.DONE.value
    assert len(pictures(sandbox, 2102)) == 1, "the photo is downloaded again for its picture"
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.photo_ranking is not None and job.photo_kind is not None and job.risk is not None
    assert job.ranking is not None
    expected = flow.classifier.prediction_from_ranking(job.photo_ranking, job.photo_kind, EVERY_ANSWER)
    assert job.ranking == expected.to_dict()["ranking"] and job.answers_used == expected.answers_used
    assert job.answers == EVERY_ANSWER.model_dump(mode="json")
    effects = flow.classifier.prediction_from_ranking(job.photo_ranking, job.photo_kind, EVERY_ANSWER).answer_effects
    assert job.answer_effects == {name: effect.value for name, effect in effects.items()}
    assert answer(sandbox, 2102) == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")
    assert flow.finalize(awaited[0]) == "duplicate", "the timeout firing later changes nothing"


def test_the_timeout_finalizes_with_the_answers_given_so_far(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    awaited: list[FinalizeResultRequest],
) -> None:
    request = patient_sends(sandbox, flow, 2103, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    partial = PatientAnswers(age=45, sex=Sex.FEMALE)
    flow.jobs.record_answers(request.job_id, partial, close=False)
    assert flow.finalize(awaited[0]) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.answers_closed_at is not None and job.photo_ranking and job.photo_kind
    expected = flow.classifier.prediction_from_ranking(job.photo_ranking, job.photo_kind, partial)
    assert job.ranking == expected.to_dict()["ranking"]
    late = flow.jobs.record_answers(request.job_id, EVERY_ANSWER, close=True)
    assert late.answers == partial.model_dump(mode="json"), "answers after the timeout change nothing"


def ask_questions(sandbox: SandboxUser, flow: ClassificationFlow, request: ClassifyPhotoRequest, chat: int) -> int:
    """What the bot does after "Analysing...": the questionnaire's first question, its message recorded."""
    question = flow.telegram.send_text(chat, questionnaire_texts.questionnaire_about_you())
    flow.jobs.set_questionnaire_message(request.job_id, question)
    return question


def text_of_message(sandbox: SandboxUser, chat: int, message_id: int) -> str:
    return str(next(m for m in sandbox.bot_messages(chat) if m["message_id"] == message_id)["text"])


def still_there(sandbox: SandboxUser, chat: int, message_id: int) -> bool:
    return any(m["message_id"] == message_id for m in sandbox.bot_messages(chat))


def test_a_questionnaire_nobody_finished_says_it_closed_and_why_when_the_result_comes(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    awaited: list[FinalizeResultRequest],
) -> None:
    request = patient_sends(sandbox, flow, 2104, photos_by_risk["low"].read_bytes(), skips_questions=False)
    question = ask_questions(sandbox, flow, request, 2104)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    assert flow.finalize(awaited[0]) == JobStatus.DONE.value
    assert text_of_message(sandbox, 2104, question) == questionnaire_texts.QUESTIONNAIRE_TIMED_OUT
    assert result_texts.RANKING_HEADING in text_of_message(sandbox, 2104, status_message_id(sandbox, 2104))


def test_a_refused_photo_leaves_no_open_questions_under_its_refusal(
    sandbox: SandboxUser, flow: ClassificationFlow
) -> None:
    request = patient_sends(sandbox, flow, 2105, b"\xff", file_id="no-such-file", skips_questions=False)
    question = ask_questions(sandbox, flow, request, 2105)
    assert flow.classify_and_reply(request) == JobStatus.REJECTED.value
    assert not still_there(sandbox, 2105, question), "no question stands about a photo already answered"
    job = flow.jobs.load(request.job_id)
    assert job is not None and asks_no_questions(job), "a question sent after this is closed by the bot"


def test_the_same_photo_again_gets_its_result_at_once_and_no_questions(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    awaited: list[FinalizeResultRequest],
) -> None:
    photo = photos_by_risk["low"].read_bytes()
    assert flow.classify_and_reply(patient_sends(sandbox, flow, 2106, photo)) == JobStatus.DONE.value
    again = patient_sends(sandbox, flow, 2106, photo, skips_questions=False)
    question = ask_questions(sandbox, flow, again, 2106)
    assert flow.classify_and_reply(again) == JobStatus.DONE.value
    assert awaited == [], "the same photo does not wait for answers"
    assert not still_there(sandbox, 2106, question)


# The reconciler (worker/reconciler.py), in this process: the same flow, jobs made overdue by hand.


@pytest.fixture
def requeued() -> list[tuple[str, uuid.UUID]]:
    """What the reconciler queued again: ("classify" or "finalize", job id)."""
    return []


def reconciler_for(
    flow: ClassificationFlow,
    requeued: list[tuple[str, uuid.UUID]],
    *,
    max_tries: int = 2,
    slow_after_s: float = 3600,
    queue_front: datetime | None = None,
) -> Reconciler:
    return Reconciler(
        jobs=flow.jobs,
        flow=flow,
        requeue_classification=lambda job_id: requeued.append(("classify", job_id)),
        requeue_finalization=lambda job_id: requeued.append(("finalize", job_id)),
        max_tries=max_tries,
        slow_notice_after_s=slow_after_s,
        queue_front=lambda: queue_front,
    )


def make_overdue(flow: ClassificationFlow, job_id: uuid.UUID, by: timedelta = timedelta(seconds=1)) -> None:
    with Session(flow.jobs._engine) as session:
        session.exec(update(Job).where(col(Job.id) == job_id).values(due_at=utc_now() - by))
        session.commit()


def status_texts(sandbox: SandboxUser, chat: int) -> list[str]:
    """The "Analysing..." message's texts, first to last (the sandbox keeps its edit history)."""
    status = sandbox.bot_messages(chat)[0]
    return [str(text) for text in status.get("edits", [])] + [str(status["text"])]


def test_an_overdue_job_is_queued_again_until_its_tries_are_spent_then_the_patient_gets_the_apology(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2201, photos_by_risk["low"].read_bytes())
    reconciler = reconciler_for(flow, requeued, max_tries=2)
    assert reconciler.run().requeued == 0, "not overdue yet"
    for _ in range(2):
        make_overdue(flow, request.job_id)
        assert reconciler.run().requeued == 1
    assert requeued == [("classify", request.job_id)] * 2
    make_overdue(flow, request.job_id)
    assert reconciler.run().gave_up == 1
    assert answer(sandbox, 2201) == patient_texts.STALLED
    job = flow.jobs.load(request.job_id)
    assert job is not None and (job.status, job.error_code) == (JobStatus.FAILED, FailureCode.STALLED)
    assert job.replied_at is not None and job.delivery is None and job.due_at is None and job.requeues == 3
    # The queued tries arriving late change nothing: the patient was answered.
    assert flow.classify_and_reply(request) == "duplicate"
    assert len(sandbox.bot_messages(2201)) == 1 and reconciler.run().gave_up == 0


def test_a_run_out_of_time_counts_no_try_for_the_jobs_it_did_not_reach(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    """Jobs are claimed one at a time within the run's budget: a run cut short (Telegram slow for the first
    ones) leaves the others due with their tries intact, for the next run."""
    data = photos_by_risk["low"].read_bytes()
    requests = [patient_sends(sandbox, flow, chat, data) for chat in (2211, 2212, 2213)]
    for request in requests:
        make_overdue(flow, request.job_id)
    out_of_time = dataclasses.replace(reconciler_for(flow, requeued), budget_s=0.0)
    assert out_of_time.run().requeued == 0
    assert all((job := flow.jobs.load(r.job_id)) is not None and job.requeues == 0 for r in requests)
    assert reconciler_for(flow, requeued).run().requeued == 3, "the next run takes them all"


def test_a_result_telegram_will_not_take_is_tried_again_less_often_and_abandoned_only_when_a_day_old(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    """An outage longer than the reconciler's tries (minutes) never erases what is owed to the patient: the
    tries go on, spaced out, and only a job a day old is given up."""
    request = patient_sends(sandbox, flow, 2221, photos_by_risk["low"].read_bytes())
    reconciler = reconciler_for(flow, requeued, max_tries=1)
    sandbox.inject_fault("editMessageText", count=100, kind="403")  # nothing reaches the patient
    sandbox.inject_fault("sendMessage", count=100, kind="403")
    try:
        for _ in range(1 + APOLOGY_TRIES + 2):  # past the regular tries and the apologies
            make_overdue(flow, request.job_id)
            counts = reconciler.run()
            assert counts.abandoned == 0
        job = flow.jobs.load(request.job_id)
        assert job is not None and job.delivery is not None, "still owed to the patient"
        assert job.due_at is not None
        assert job.due_at.replace(tzinfo=UTC) > utc_now() + timedelta(seconds=60), "spaced out"
        make_overdue(flow, request.job_id)
        assert dataclasses.replace(reconciler, abandon_after_s=0).run().abandoned == 1
        job = flow.jobs.load(request.job_id)
        assert job is not None and job.delivery is None and job.due_at is None
    finally:
        sandbox.clear_faults()


def test_a_queued_job_behind_a_backlog_is_late_not_lost_until_the_queue_reaches_it_or_the_backlog_deadline(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2202, photos_by_risk["low"].read_bytes())
    deadlines = flow.jobs.deadlines
    make_overdue(flow, request.job_id)  # published Q + 1 s ago
    # The oldest message still waiting was published a minute ago: this job's message waits behind it.
    backlog = reconciler_for(flow, requeued, queue_front=utc_now() - timedelta(seconds=60))
    assert backlog.run().requeued == 0 and requeued == []
    # The workers took the queue past it (the oldest waiting message is newer): its message was taken and lost.
    moved_on = reconciler_for(flow, requeued, queue_front=utc_now())
    assert moved_on.run().requeued == 1 and requeued == [("classify", request.job_id)]
    # Queued again behind a queue nobody has taken for an hour: after the backlog deadline it is overdue all the same.
    stuck = reconciler_for(flow, requeued, queue_front=utc_now() - timedelta(hours=1))
    make_overdue(flow, request.job_id, by=timedelta(seconds=deadlines.backlog_s - 5))
    assert stuck.run().requeued == 0
    make_overdue(flow, request.job_id, by=timedelta(seconds=deadlines.backlog_s + 1))
    assert stuck.run().requeued == 1 and len(requeued) == 2


def test_an_analysed_job_never_finalized_is_finalized_by_the_reconciler(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2202, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS  # and its delayed finalize got lost
    make_overdue(flow, request.job_id)
    reconciler_for(flow, requeued).run()
    assert requeued == [("finalize", request.job_id)]
    assert flow.finalize(FinalizeResultRequest(job_id=request.job_id)) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.answers_closed_at is not None and job.replied_at is not None


def test_an_analysed_job_behind_a_backlog_waits_and_when_its_tries_are_spent_gets_its_result_not_an_apology(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2205, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    make_overdue(flow, request.job_id)
    # Its finalize message waits behind messages published before it was analysed: late, not lost.
    behind = reconciler_for(flow, requeued, queue_front=utc_now() - timedelta(seconds=60))
    assert behind.run().requeued == 0 and requeued == []
    # Every try spent (its finalize never ran): the result, which exists, is what the patient gets.
    reconciler = reconciler_for(flow, requeued, max_tries=0)
    assert reconciler.run().gave_up == 1
    assert result_texts.RANKING_HEADING in answer(sandbox, 2205) and answer(sandbox, 2205) != patient_texts.STALLED
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.status == JobStatus.DONE and job.replied_at is not None and job.error_code is None


def test_a_patient_kept_waiting_is_told_once_and_the_result_then_replaces_the_notice(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2203, photos_by_risk["low"].read_bytes())
    reconciler = reconciler_for(flow, requeued, slow_after_s=0)
    assert reconciler.run().told_slow == 1
    assert answer(sandbox, 2203) == patient_texts.TAKING_LONGER
    assert reconciler.run().told_slow == 0, "once"
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.ranking is not None and job.risk is not None
    result = plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")
    assert status_texts(sandbox, 2203) == [patient_texts.ANALYSING, patient_texts.TAKING_LONGER, result]


def test_a_notice_racing_the_answer_never_hides_it(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    """The reconciler claimed the notice while the job was running; the worker's answer went out before the
    notice's edit: the answer is put back on top."""
    request = patient_sends(sandbox, flow, 2204, photos_by_risk["low"].read_bytes())
    assert flow.jobs.claim_slow_notice(waiting_longer_than_s=0) == [request.job_id]
    # The worker, up to its reply (the patient's edit done, not yet recorded as replied).
    job = flow.jobs.load(request.job_id)
    assert job is not None
    flow.jobs.mark_running(job.id)
    prediction = screen_photo(photos_by_risk["low"].read_bytes(), flow.classifier)
    flow.jobs.mark_done(job.id, prediction, image_sha256="0" * 64)
    combined = flow.classifier.prediction_from_ranking(prediction.to_dict()["ranking"], prediction.photo_kind, None)
    job = flow.jobs.mark_combined(job.id, combined)
    flow.telegram.edit_text(2204, status_message_id(sandbox, 2204), patient_text(job))
    flow.tell_taking_longer(job.id)
    assert answer(sandbox, 2204) == plain_text(patient_text(job), "HTML")
    assert patient_texts.TAKING_LONGER in status_texts(sandbox, 2204)


def test_a_finished_result_is_never_turned_into_a_failure(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    request = patient_sends(sandbox, flow, 2205, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    flow.fail(request.job_id, FailureCode.INTERNAL_ERROR, "a broker hiccup while queueing something")
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.status == JobStatus.DONE and job.error_code is None and job.replied_at is None
    assert answer(sandbox, 2205) == patient_texts.ANALYSING, "no apology for a result that exists"


def no_thanks(jobs: JobStore) -> int:
    """What the bot does with the tap (bot/consent.py) for patient_sends' patient: their jobs not analysed closed."""
    return jobs.close_unanalysed("f" * 32, FailureCode.CONSENT_WITHDRAWN, "consent withdrawn")


def test_photos_not_analysed_when_consent_is_withdrawn_are_never_downloaded_and_analysed_ones_keep_their_result(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    """ "No thanks" after agreeing (bot/consent.py): a photo still queued is closed; the worker that takes its
    message tells the patient it will not be analysed, without downloading it. One analysed already keeps its
    result, which the patient still gets."""
    analysed = patient_sends(sandbox, flow, 2207, photos_by_risk["alert"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(analysed) == AWAITING_ANSWERS
    queued = patient_sends(sandbox, flow, 2207, photos_by_risk["low"].read_bytes())
    queued_status = int(sandbox.bot_messages(2207)[-1]["message_id"])

    assert no_thanks(flow.jobs) == 1

    downloads = len(sandbox.calls("getFile"))
    assert flow.classify_and_reply(queued) == JobStatus.FAILED.value
    assert len(sandbox.calls("getFile")) == downloads, "never downloaded"
    (status,) = [m for m in sandbox.bot_messages(2207) if m["message_id"] == queued_status]
    assert status["text"] == patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS
    job = flow.jobs.load(queued.job_id)
    assert job is not None and job.status == JobStatus.FAILED and job.error_code == FailureCode.CONSENT_WITHDRAWN
    assert job.ranking is None and job.replied_at is not None and job.delivery is None
    assert no_thanks(flow.jobs) == 0
    kept = flow.jobs.load(analysed.job_id)
    assert kept is not None and kept.status == JobStatus.DONE and kept.error_code is None
    assert flow.finalize(FinalizeResultRequest(job_id=analysed.job_id)) == JobStatus.DONE.value


@pytest.mark.parametrize("step", ["mark_running", "earlier_result"])
def test_a_photo_closed_as_its_analysis_starts_or_runs_is_not_analysed_and_the_patient_is_told(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path], step: str
) -> None:
    """The tap lands as the worker starts the job (nothing downloaded) or while it analyses it (the result is
    never stored): either way the patient reads that it will not be analysed."""

    class ClosedAt(JobStore):
        def mark_running(self, job_id: uuid.UUID) -> Job:
            if step == "mark_running":
                no_thanks(self)
            return super().mark_running(job_id)

        def earlier_result(self, job: Job, image_sha256: str) -> Job | None:
            if step == "earlier_result":  # after the download, before the analysis is stored
                no_thanks(self)
            return super().earlier_result(job, image_sha256)

    racing = dataclasses.replace(flow, jobs=ClosedAt(flow.jobs._engine))
    request = patient_sends(sandbox, racing, 2208, photos_by_risk["low"].read_bytes())
    downloads = len(sandbox.calls("getFile"))
    assert racing.classify_and_reply(request) == JobStatus.FAILED.value
    job = racing.jobs.load(request.job_id)
    assert job is not None and job.error_code == FailureCode.CONSENT_WITHDRAWN and job.ranking is None
    assert job.replied_at is not None
    assert len(sandbox.calls("getFile")) == downloads + (step == "earlier_result")
    assert answer(sandbox, 2208) == patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS
    assert pictures(sandbox, 2208) == [], "no explanation picture"


def test_a_task_queued_in_the_old_shape_is_still_answered(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    """Queued before delivery data moved to the row: the row has none, the message carries it."""
    sent = sandbox.send_photo(2206, photos_by_risk["low"].read_bytes())
    job = flow.jobs.record_received(
        chat_ref=PATIENT, media_kind=MediaKind.PHOTO, file_unique_id=sent["photo"][-1]["file_unique_id"]
    )
    flow.jobs.record_answers(job.id, PatientAnswers(), close=True)
    status_id = flow.telegram.send_text(2206, patient_texts.ANALYSING)
    old_shape = {
        "job_id": str(job.id),
        "chat_id": 2206,
        "status_message_id": status_id,
        "file_id": sent["photo"][-1]["file_id"],
        "media_kind": "photo",
    }
    assert flow.classify_and_reply(ClassifyPhotoRequest.model_validate(old_shape)) == JobStatus.DONE.value
    answered = flow.jobs.load(job.id)
    assert answered is not None and answered.replied_at is not None and answered.delivery is None
    assert answer(sandbox, 2206) != patient_texts.ANALYSING


def test_a_job_stuck_running_in_a_dead_worker_is_queued_again_and_answered_once(
    sandbox: SandboxUser,
    flow: ClassificationFlow,
    photos_by_risk: dict[str, Path],
    requeued: list[tuple[str, uuid.UUID]],
) -> None:
    request = patient_sends(sandbox, flow, 2207, photos_by_risk["low"].read_bytes())
    flow.jobs.mark_running(request.job_id)  # its worker died here, its message with it
    assert reconciler_for(flow, requeued).run().requeued == 0, "running, not overdue yet"
    make_overdue(flow, request.job_id)  # past the task's hard time limit
    assert reconciler_for(flow, requeued).run().requeued == 1
    assert requeued == [("classify", request.job_id)]
    assert flow.classify_and_reply(request) == JobStatus.DONE.value
    assert flow.classify_and_reply(request) == "duplicate"
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.delivery_attempts == 2 and job.requeues == 1 and job.replied_at is not None
    status_id = status_message_id(sandbox, 2207)
    edits = [
        c
        for c in sandbox.calls("editMessageText")
        if int(c["parameters"]["chat_id"]) == 2207 and int(c["parameters"]["message_id"]) == status_id
    ]
    assert len(edits) == 1, "answered once"


def test_a_failure_recorded_as_the_patient_withdraws_gives_way_to_the_withdrawal(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    """A task out of time (or the reconciler giving up) loads the job, and the tap closes it before the failure
    is written: the patient reads the withdrawal, and the task does not fail on it."""

    class ClosedBeforeTheFailure(JobStore):
        def mark_failed(self, job_id: uuid.UUID, code: FailureCode, reason: str) -> Job:
            no_thanks(self)
            return super().mark_failed(job_id, code, reason)

    racing = dataclasses.replace(flow, jobs=ClosedBeforeTheFailure(flow.jobs._engine))
    timed_out = patient_sends(sandbox, racing, 2210, photos_by_risk["low"].read_bytes())
    racing.fail(timed_out.job_id, FailureCode.TIME_LIMIT, "the analysis took too long")
    given_up = patient_sends(sandbox, racing, 2211, photos_by_risk["low"].read_bytes())
    assert racing.give_up(given_up.job_id) == JobStatus.FAILED.value
    for request, chat in ((timed_out, 2210), (given_up, 2211)):
        job = racing.jobs.load(request.job_id)
        assert job is not None and job.error_code == FailureCode.CONSENT_WITHDRAWN and job.replied_at is not None
        assert answer(sandbox, chat) == patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS


def test_an_album_with_a_photo_analysed_and_one_closed_by_no_thanks_gets_one_reply_about_both(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path]
) -> None:
    chat, album_id = 2209, "a" * 32
    album_status = flow.telegram.send_text(chat, patient_texts.ANALYSING)
    requests = []
    for name in ("low", "alert"):
        sent = sandbox.send_photo(chat, photos_by_risk[name].read_bytes())
        job = flow.jobs.record_received(
            chat_ref=PATIENT,
            media_kind=MediaKind.PHOTO,
            file_unique_id=sent["photo"][-1]["file_unique_id"],
            delivery=Delivery(chat_id=chat, file_id=sent["photo"][-1]["file_id"]),
            album_id=album_id,
            album_position=sent["message_id"],
        )
        flow.jobs.set_status_message(job.id, album_status)
        requests.append(ClassifyPhotoRequest(job_id=job.id))
    assert flow.classify_and_reply(requests[0]) == ALBUM_WAITING

    assert no_thanks(flow.jobs) == 1
    assert flow.classify_and_reply(requests[1]) == ALBUM_ANSWERED

    analysed = flow.jobs.load(requests[0].job_id)
    assert analysed is not None and analysed.status == JobStatus.DONE
    (status,) = [m for m in sandbox.bot_messages(chat) if m["message_id"] == album_status]
    expected = replies.album_texts(flow.jobs.album(album_id), [request.job_id for request in requests])[0]
    assert status["text"] == plain_text(expected, "HTML")
    assert patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS in status["text"], "the closed photo's line"
    assert len(pictures(sandbox, chat)) == 1, "a picture for the analysed photo only"


def test_a_worker_of_another_model_version_never_decides_the_risk_and_the_last_resort_is_the_stored_result(
    sandbox: SandboxUser, flow: ClassificationFlow, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    """Hosts mid-upgrade: the photo was analysed by another build's model; this worker's policy must not decide its
    risk. It hands the job back (the task retries for a worker of that version); when none is left to take it, the
    reconciler's last resort answers with the analysing model's own photo-only result."""
    request = patient_sends(sandbox, flow, 2210, photos_by_risk["low"].read_bytes(), skips_questions=False)
    assert flow.classify_and_reply(request) == AWAITING_ANSWERS
    with Session(build_engine(f"sqlite:///{tmp_path / 'flow.sqlite3'}")) as session:  # the flow's database
        job = session.get(Job, request.job_id)
        assert job is not None
        job.model_version, job.risk = "another-build", RiskLevel.MEDIUM  # what that build stored (not LOW)
        session.add(job)
        session.commit()
    flow.jobs.record_answers(request.job_id, EVERY_ANSWER, close=True)

    with pytest.raises(OtherModelVersion):
        flow.finalize(FinalizeResultRequest(job_id=request.job_id))
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.replied_at is None and job.answers_used is None, "nothing decided, nothing sent"
    assert answer(sandbox, 2210) == patient_texts.ANALYSING

    assert flow.give_up(request.job_id) == JobStatus.DONE.value
    job = flow.jobs.load(request.job_id)
    assert job is not None and job.replied_at is not None
    assert (job.model_version, job.risk, job.answers_used) == ("another-build", RiskLevel.MEDIUM, [])
    assert job.ranking == job.photo_ranking, "the analysing model's photo-only ranking, not this worker's"
    assert answer(sandbox, 2210) == plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")
