"""The patient conversation end to end on the real stack (sandbox, bot process, redis-server, a prefork Celery
worker, SQLite): consent first, the questionnaire while the worker analyses, and a result that combines them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from bot.patients import PatientStore
from models.serving.inference import Classifier
from shared.answers import PatientAnswers, Sex
from shared.audit import Consent, InboundUpdate, Job, JobStatus, PatientProfile, chat_reference
from shared.labels import PhotoKind
from shared.outcomes import FailureCode
from shared.questionnaire import AgeRange
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts import result as result_texts
from skinsense.sandbox import plain_text
from tests.auxil.patient import (
    EVERY_ANSWER,
    EVERY_ANSWER_TAPS,
    answer_questionnaire,
    consent,
    erase_everything,
    every_answer_closing_text,
    questionnaire_for,
    skip_questionnaire,
)
from tests.auxil.sandbox_user import button_data
from tests.auxil.services import wait_until
from tests.auxil.stack import BOT_TOKEN, CHAT_HASH_KEY, RunningStack, running_stack

pytestmark = pytest.mark.e2e
QUESTIONNAIRE_TIMEOUT_S = 20  # the stack's; long enough to tap every question on a busy machine


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("conversation")
    with running_stack(
        redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, questionnaire_timeout_s=QUESTIONNAIRE_TIMEOUT_S
    ) as running:
        yield running


def rows_about(stack: RunningStack, chat: int) -> list[object]:
    chat_ref = chat_reference(chat, CHAT_HASH_KEY)
    with Session(stack.engine) as session:
        jobs: list[object] = list(session.exec(select(Job).where(Job.chat_ref == chat_ref)).all())
        consents = list(session.exec(select(Consent).where(Consent.chat_ref == chat_ref)).all())
        profiles = list(session.exec(select(PatientProfile).where(PatientProfile.chat_ref == chat_ref)).all())
    return [*jobs, *consents, *profiles]


def answered_job(stack: RunningStack, file_unique_id: str) -> Job:
    def find() -> Job | None:
        with Session(stack.engine) as session:
            job = session.exec(select(Job).where(Job.telegram_file_unique_id == file_unique_id)).first()
        return job if job is not None and job.replied_at is not None else None

    return wait_until(find, 90, what="the job to be answered")


def classify_cli(path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "classify", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(completed.stdout.splitlines()[0]))


def result_text(job: Job) -> str:
    return plain_text(result_texts.result(result_texts.PatientResult.of_job(job)), "HTML")


def agree_leaving_an_older_prompt(stack: RunningStack, chat: int) -> dict[str, Any]:
    """The patient agrees on a second privacy prompt; the first keeps its buttons ("No thanks" there withdraws
    the consent). Returns the first."""
    first = stack.user.send_text(chat, "hello")
    older = stack.user.wait_for_button(chat, patient_texts.CONSENT_DECLINE_BUTTON, after_id=first["message_id"])
    second = stack.user.send_text(chat, "hello?")
    newer = stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=second["message_id"])
    stack.user.tap(chat, newer["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
    stack.user.wait_for_text(chat, newer["message_id"], patient_texts.CONSENT_GIVEN)
    return older


def test_a_photo_before_consent_is_not_analysed_until_i_agree_and_needs_no_resending(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 1301
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    prompt = stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])
    assert prompt["text"] == plain_text(patient_texts.PRIVACY, "HTML")
    time.sleep(1.0)  # a worker that wrongly got the photo would be downloading it by now
    assert rows_about(stack, chat) == [], "nothing recorded before consent"
    assert stack.user.replies_to(chat, sent["message_id"]) == [], "no analysis started"
    assert not [
        c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == sent["photo"][-1]["file_id"]
    ]

    stack.user.tap(chat, prompt["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
    stack.user.wait_for_text(chat, prompt["message_id"], patient_texts.CONSENT_GIVEN_PHOTO_PENDING)
    skip_questionnaire(stack.user, chat, sent["message_id"])
    reply = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)
    job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    assert reply["text"] == result_text(job), stack.logs()
    assert len([m for m in stack.user.messages(chat) if m.get("photo") and not m["from_bot"]]) == 1, "sent once"
    (agreed,) = [row for row in rows_about(stack, chat) if isinstance(row, Consent)]
    assert agreed.text_version == patient_texts.PRIVACY_VERSION and agreed.decided_at is not None


def test_no_thanks_after_an_earlier_agreement_says_what_is_still_stored_and_how_to_erase_it(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """An older privacy prompt still has its buttons: "No thanks" there, after agreeing and getting a result,
    must not claim that nothing about the patient is stored."""
    chat = 1390
    older = agree_leaving_an_older_prompt(stack, chat)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    skip_questionnaire(stack.user, chat, sent["message_id"])
    stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)

    # A second photo, analysed, has its questionnaire open when the patient withdraws: it closes, no answer is
    # taken after, and the photo-only result goes out (one not analysed yet is never analysed: the test below).
    another = stack.user.send_photo(chat, photos_by_risk["alert"].read_bytes())
    open_questions = questionnaire_for(stack.user, chat, another["message_id"])

    def analysed() -> bool:
        with Session(stack.engine) as session:
            statement = select(Job).where(Job.telegram_file_unique_id == another["photo"][-1]["file_unique_id"])
            job = session.exec(statement).first()
        return job is not None and job.status == JobStatus.DONE

    wait_until(analysed, 90, what="the second photo's analysis")
    stack.user.tap(chat, older["message_id"], patient_texts.CONSENT_DECLINE_BUTTON)
    said = patient_texts.CONSENT_DECLINED_WITH_DATA.format(jobs=2)
    stack.user.wait_for_text(chat, older["message_id"], said)
    stack.user.wait_for_text(
        chat, open_questions["message_id"], plain_text(questionnaire_texts.QUESTIONNAIRE_SKIPPED, "HTML")
    )
    stack.user.wait_for_reply(chat, another["message_id"], timeout_s=90)  # sent under consent: its photo-only result
    assert not [row for row in rows_about(stack, chat) if isinstance(row, Consent)], "consent withdrawn"
    jobs = [row for row in rows_about(stack, chat) if isinstance(row, Job)]
    assert len(jobs) == 2, "the results stay until /delete"
    assert all(job.answers_used == [] for job in jobs), "no answers taken"


def bot_idle(stack: RunningStack) -> bool:
    """Every update the bot received is handled to its end (bot/durable_updates.py marks it processed)."""
    with Session(stack.engine) as session:
        return session.exec(select(InboundUpdate).where(col(InboundUpdate.processed_at).is_(None))).first() is None


def test_no_thanks_while_a_photo_waits_for_its_analysis_means_it_is_never_analysed(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """Consent is withdrawn while the photo waits in the queue (Telegram asked the worker to wait 12 s before
    the download, longer than a worker waits in place): the job is closed, and the worker's retry tells the
    patient it will not be analysed instead of downloading it.

    Telegram's flood control holds every call of the deployment, the bot's too: the questionnaire, sent as the
    worker meets the first 429, may go out only when the pause ends, as the worker's retry starts. The retry
    meets a second 429, so the patient, who taps once the questionnaire is there, always taps while the photo
    still waits (the second is left unused when the questionnaire went out before the first)."""
    chat = 1391
    older = agree_leaving_an_older_prompt(stack, chat)

    def all_answered() -> bool:  # earlier tests' pictures sent: none of their downloads takes the fault below
        with Session(stack.engine) as session:
            return session.exec(select(Job).where(col(Job.replied_at).is_(None))).first() is None

    wait_until(all_answered, 90, what="the worker to finish earlier photos")
    stack.user.inject_fault("getFile", count=2, retry_after=12)  # longer than a worker waits: the task retries
    try:
        sent = stack.user.send_photo(chat, photos_by_risk["alert"].read_bytes())
        status = stack.user.wait_for_reply(chat, sent["message_id"], final=False)
        open_questions = questionnaire_for(stack.user, chat, sent["message_id"])
        wait_until(lambda: [c for c in stack.user.calls("getFile") if c.get("fault") == "429"], 60, what="the wait")
        wait_until(lambda: bot_idle(stack), 60, what="the bot to finish with the photo (its questionnaire kept)")

        tapped_at = time.time()
        stack.user.tap(chat, older["message_id"], patient_texts.CONSENT_DECLINE_BUTTON)

        stack.user.wait_for_text(chat, open_questions["message_id"], questionnaire_texts.QUESTIONNAIRE_CLOSED)
        stack.user.wait_for_text(chat, status["message_id"], patient_texts.CONSENT_WITHDRAWN_IN_PROGRESS, timeout_s=90)
        # The row says replied once the worker's edit returned: read it then, not as soon as the patient sees it.
        job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    finally:
        stack.user.clear_faults()
    assert [row.id for row in rows_about(stack, chat) if isinstance(row, Job)] == [job.id]
    assert job.status == JobStatus.FAILED and job.error_code == FailureCode.CONSENT_WITHDRAWN
    assert job.ranking is None and job.delivery is None and job.replied_at is not None
    file_id = sent["photo"][-1]["file_id"]
    downloads = [c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == file_id]
    assert downloads and all(c.get("fault") == "429" for c in downloads), "only asked (refused), never downloaded"
    # Closed at once, even while flood control holds every call: the tap's effect never waits behind the answer
    # to the button (a withdrawal recorded only when the pause ended raced the worker's retry, which could then
    # analyse the photo and send its result: this test's old flake). So before the pause in effect at the tap
    # ends, or, with none, well within a pause's length.
    assert job.finished_at is not None
    closed_at = job.finished_at.replace(tzinfo=job.finished_at.tzinfo or UTC).timestamp()
    pause_ends = [c["time"] + 12 for c in downloads if tapped_at - 12 < c["time"] <= tapped_at]
    assert closed_at < min([*pause_ends, tapped_at + 12]), "withdrawn during the pause, not after it"


def test_no_thanks_stores_nothing_and_analyses_nothing(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 1302
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    prompt = stack.user.wait_for_button(chat, patient_texts.CONSENT_DECLINE_BUTTON, after_id=sent["message_id"])
    stack.user.tap(chat, prompt["message_id"], patient_texts.CONSENT_DECLINE_BUTTON)
    stack.user.wait_for_text(chat, prompt["message_id"], patient_texts.CONSENT_DECLINED)
    time.sleep(1.0)
    assert rows_about(stack, chat) == []
    assert stack.user.replies_to(chat, sent["message_id"]) == []
    assert not [
        c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == sent["photo"][-1]["file_id"]
    ]
    again = stack.user.send_text(chat, "hello")
    stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=again["message_id"])


def test_privacy_shows_the_text_any_time(stack: RunningStack) -> None:
    chat = 1303
    sent = stack.user.send_text(chat, "/privacy")
    prompt = stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])
    assert prompt["text"] == plain_text(patient_texts.PRIVACY, "HTML")
    consent(stack.user, chat)
    later = stack.user.send_text(chat, "/privacy")

    def shown() -> dict[str, Any] | None:
        return next((m for m in stack.user.bot_messages(chat) if m["message_id"] > later["message_id"]), None)

    text = wait_until(shown, 30, what="the privacy text")
    assert (
        text["text"].startswith(plain_text(patient_texts.PRIVACY, "HTML"))
        and "You agreed to this text on" in text["text"]
    )
    buttons = [b["text"] for row in text["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [patient_texts.CONSENT_WITHDRAW_BUTTON], "once agreed, only the way back"

    stack.user.tap(chat, text["message_id"], patient_texts.CONSENT_WITHDRAW_BUTTON)  # as easy as agreeing
    stack.user.wait_for_text(chat, text["message_id"], patient_texts.CONSENT_DECLINED)
    assert not [row for row in rows_about(stack, chat) if isinstance(row, Consent)], "consent withdrawn"
    again = stack.user.send_text(chat, "hello")
    stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=again["message_id"])


def test_a_patient_who_answers_every_question_gets_a_result_that_uses_them(
    stack: RunningStack, photos_by_risk: dict[str, Path], phone_photo: Path, classifier: Classifier
) -> None:
    chat = 1304
    path = phone_photo  # the answers combine with phone photos' results only
    consent(stack.user, chat)
    before = len(messages_sent_to(stack, chat))
    sent = stack.user.send_photo(chat, path.read_bytes())
    questions = answer_questionnaire(stack.user, chat, sent["message_id"], EVERY_ANSWER_TAPS)
    assert questions["text"] == every_answer_closing_text()
    reply = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)
    # The result arrives where the patient reads next: under the questions they answered ("Analysing..." was
    # sent after them), and the explanation picture follows. Every message and edit counts against the bot's
    # Telegram allowance: at most 6 for a photo with its questions answered (was 13 with a question per edit).
    assert reply["message_id"] > questions["message_id"]
    wait_until(lambda: "sendPhoto" in [c["method"] for c in messages_sent_to(stack, chat)[before:]], 60, what="pic")
    spent = [c["method"] for c in messages_sent_to(stack, chat)[before:]]
    assert len(spent) <= 6, spent
    job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.answers == EVERY_ANSWER.model_dump(mode="json"), "the audit row holds the answers"
    photo_only = classify_cli(path)
    assert job.photo_ranking == photo_only["ranking"], "the photo-only ranking is kept for the audit"
    combined = classifier.prediction_from_ranking(
        photo_only["ranking"], PhotoKind(photo_only["photo_kind"]), EVERY_ANSWER
    )
    assert job.ranking == combined.to_dict()["ranking"] and job.answers_used == combined.answers_used
    assert job.answers_used and set(job.answers_used) <= set(EVERY_ANSWER.known()), "the result uses the answers"
    assert (job.risk, job.melanoma_alert) == (combined.risk, combined.melanoma_alert)
    assert reply["text"] == result_text(job), stack.logs()

    # Age and sex are remembered for the next photo (another spot: the same photo again would get the same
    # result); the patient keeps them and knows nothing else.
    second = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    questions = questionnaire_for(stack.user, chat, second["message_id"])
    assert "age 40-49, female" in questions["text"]
    answer_questionnaire(stack.user, chat, second["message_id"], ["Yes, still right"] + ["Don't know"] * 7)
    stack.user.wait_for_reply(chat, second["message_id"], timeout_s=90)
    remembered = answered_job(stack, second["photo"][-1]["file_unique_id"])
    assert remembered.answers == PatientAnswers(age=45, sex=Sex.FEMALE).model_dump(mode="json")


def test_skip_and_all_dont_know_give_exactly_the_photo_only_ranking_of_classify(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat, other_chat = 1305, 1309  # two patients: one patient's same photo again would repeat its first result
    path = photos_by_risk["alert"]
    expected = classify_cli(path)
    consent(stack.user, chat)
    consent(stack.user, other_chat)
    skipped = stack.user.send_photo(chat, path.read_bytes())
    skip_questionnaire(stack.user, chat, skipped["message_id"])
    dont_know = stack.user.send_photo(other_chat, path.read_bytes())
    answer_questionnaire(stack.user, other_chat, dont_know["message_id"], ["Don't know"] * 9)
    for sent in (skipped, dont_know):
        reply = stack.user.wait_for_reply(sent["chat"]["id"], sent["message_id"], timeout_s=90)
        job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
        assert job.ranking == job.photo_ranking == expected["ranking"]
        assert (job.risk, job.melanoma_alert, job.answers_used) == (expected["risk"], expected["melanoma_alert"], [])
        assert reply["text"] == result_text(job)
    assert answered_job(stack, skipped["photo"][-1]["file_unique_id"]).answers == PatientAnswers().model_dump()


def test_unanswered_questions_time_out_into_the_photo_only_result(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 1306
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    questions = questionnaire_for(stack.user, chat, sent["message_id"])
    reply = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=QUESTIONNAIRE_TIMEOUT_S + 60)
    job = answered_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.status == JobStatus.DONE and job.answers_closed_at is not None and job.ranking == job.photo_ranking
    assert reply["text"] == result_text(job)
    # The questions say they closed, and why; no button is left to tap; the result is the newer message.
    closed = stack.user.wait_for_text(
        chat, questions["message_id"], plain_text(questionnaire_texts.QUESTIONNAIRE_TIMED_OUT, "HTML")
    )
    assert not closed.get("reply_markup") and reply["message_id"] > questions["message_id"]


def test_delete_erases_everything_about_the_patient(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 1307
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    answer_questionnaire(stack.user, chat, sent["message_id"], ["30-39", "Male"])
    skip_questionnaire(stack.user, chat, sent["message_id"])
    stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)
    assert rows_about(stack, chat)
    erase_everything(stack.user, chat, jobs=1)
    assert rows_about(stack, chat) == []
    again = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=again["message_id"])


def test_a_consent_to_an_older_privacy_text_asks_again(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 1308
    PatientStore(stack.engine).record_consent(chat_reference(chat, CHAT_HASH_KEY), "2000-01-01")
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    prompt = stack.user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])
    assert patient_texts.PRIVACY_VERSION in prompt["text"]
    assert not [row for row in rows_about(stack, chat) if isinstance(row, Job)], "not analysed on the old consent"
    stack.user.tap(chat, prompt["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
    skip_questionnaire(stack.user, chat, sent["message_id"])
    assert result_texts.RANKING_HEADING in stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)["text"]


def answer_to_press(stack: RunningStack, query: dict[str, Any]) -> str:
    """What the bot answered to a press (answerCallbackQuery's text; empty when it answered without one)."""

    def find() -> str | None:
        for call in stack.user.calls("answerCallbackQuery"):
            if str(call["parameters"].get("callback_query_id")) == query["id"]:
                return str(call["parameters"].get("text") or "")
        return None

    return wait_until(find, 30, what="the answer to the press")


def test_another_patients_questionnaire_buttons_are_refused_and_change_nothing(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """Patient B sends the callback data of patient A's questionnaire (A's job id: a custom client can send any
    data) from B's own chat: an answer, and Skip. Each press is refused with a short answer; A's questionnaire
    stays open, unchanged, and B's chat shows nothing of A's (A's remembered age and sex above all)."""
    a, b = 1310, 1311
    consent(stack.user, a)  # a profile is remembered only under consent
    PatientStore(stack.engine).remember_profile(chat_reference(a, CHAT_HASH_KEY), AgeRange.FORTIES, Sex.FEMALE)
    consent(stack.user, b)
    sent = stack.user.send_photo(a, photos_by_risk["low"].read_bytes())
    a_questions = questionnaire_for(stack.user, a, sent["message_id"])
    assert "age 40-49, female" in a_questions["text"]
    keep, skip = (button_data(a_questions, label) for label in ("Yes, still right", questionnaire_texts.SKIP_BUTTON))
    assert keep is not None and skip is not None
    b_message = stack.user.bot_messages(b)[-1]  # B's own message from the bot, under which B presses
    b_before = stack.user.messages(b)

    def job_of_a() -> Job:
        with Session(stack.engine) as session:
            statement = select(Job).where(Job.telegram_file_unique_id == sent["photo"][-1]["file_unique_id"])
            return session.exec(statement).one()

    for data in (keep, skip):
        press = stack.user.forge_callback(b, b_message["message_id"], data)
        assert answer_to_press(stack, press) == questionnaire_texts.QUESTIONNAIRE_NOT_YOURS
    assert stack.user.messages(b) == b_before, "B's chat unchanged: no edit, nothing of A's"
    (a_after,) = [m for m in stack.user.bot_messages(a) if m["message_id"] == a_questions["message_id"]]
    assert a_after == a_questions, "A's questionnaire unchanged"
    job = job_of_a()
    assert job.answers_closed_at is None and job.answers in (None, {}), "A's questionnaire still open"

    # A's questionnaire goes on for A.
    answer_questionnaire(stack.user, a, sent["message_id"], ["Yes, still right"])
    skip_questionnaire(stack.user, a, sent["message_id"])
    stack.user.wait_for_reply(a, sent["message_id"], timeout_s=90)
    assert job_of_a().answers == PatientAnswers().model_dump(mode="json"), "A skipped: no answers"

    # Closed now (forgotten by the bot): the job row says whose it is, and B is still refused.
    b_before = stack.user.messages(b)
    press = stack.user.forge_callback(b, b_message["message_id"], skip)
    assert answer_to_press(stack, press) == questionnaire_texts.QUESTIONNAIRE_NOT_YOURS
    assert stack.user.messages(b) == b_before


def test_questions_sent_twice_by_a_replaced_bot_close_together_whichever_copy_the_patient_answers(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    """A bot killed after sending the questions and before recording their message is replaced by one that asks
    again: the patient sees two copies and may answer the one the bot does not know."""
    chat = 1320
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    recorded = questionnaire_for(stack.user, chat, sent["message_id"])
    copy = httpx.post(  # the other copy, sent with the bot's token as the replaced bot sent it
        f"{stack.user.api_url}/bot{BOT_TOKEN}/sendMessage",
        json={
            "chat_id": chat,
            "text": recorded["text"],
            "reply_markup": recorded["reply_markup"],
            "reply_parameters": {"message_id": sent["message_id"]},
        },
        timeout=30,
    ).json()["result"]
    stack.user.wait_for_answer(stack.user.tap(chat, copy["message_id"], EVERY_ANSWER_TAPS[0]))
    stack.user.tap(chat, copy["message_id"], questionnaire_texts.SKIP_BUTTON)
    skipped = plain_text(questionnaire_texts.QUESTIONNAIRE_SKIPPED, "HTML")
    for questions in (copy, recorded):
        closed = stack.user.wait_for_text(chat, questions["message_id"], skipped)
        assert not closed.get("reply_markup"), "no button left on either copy"
    stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)


def messages_sent_to(stack: RunningStack, chat: int) -> list[dict[str, Any]]:
    """The bot's messages and edits to a chat that Telegram took, oldest first (each counts against its allowance)."""
    counted = ("sendMessage", "editMessageText", "editMessageReplyMarkup", "sendPhoto", "sendDocument")
    return [
        call
        for call in stack.user.calls()
        if call["method"] in counted and str(call["parameters"].get("chat_id")) == str(chat) and not call.get("fault")
    ]
