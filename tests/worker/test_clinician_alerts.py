"""Clinician alerts in this process: the outbox row written with the result, exactly-once sending against the
real Bot API sandbox (with its dropped-response and 429 faults), threads and the forwarding limit, claims and
resolutions, and the closed loop's marks; on a real (migrated) SQLite audit database and the real model."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from models.serving.inference import Classifier
from models.serving.screening import screen_photo
from shared.answers import PatientAnswers
from shared.audit import AlertResolution, AlertState, ClinicianAction, JobStatus, MediaKind
from shared.clinic.calendar import WorkingCalendar
from shared.clinic.store import AlertStore, NewClinicianAlert, ThreadPolicy
from shared.clinic.views import AlertView, percentile
from shared.config import Settings
from shared.job_store import JobStore
from shared.labels import PhotoKind, RiskLevel
from shared.telegram_calls import OutcomeUnknown, WaitTooLong
from shared.texts import clinician as clinician_texts
from shared.texts import questionnaire as questionnaire_texts
from tests.auxil.database import migrated_engine
from tests.auxil.sandbox_user import SandboxUser, button_data, running_sandbox
from tests.auxil.services import (
    postgres_database,
    wait_until,
)
from worker.clinician_alerts import (
    ALERT_MAX_WAIT_S,
    MAX_DELIVERY_ATTEMPTS,
    ClinicianAlertSender,
    explanation_for_clinicians,
)
from worker.telegram import TelegramClient

TOKEN = "6363:clinician-alerts-test-token"
CLINICIANS = (9201, 9202)
DEFAULT_THREADS = ThreadPolicy()
AROUND_THE_CLOCK = WorkingCalendar.parse("00:00-24:00", "mon-sun", "UTC")


def alert_view(ranking: list[dict[str, Any]], answers: PatientAnswers, **changes: Any) -> AlertView:
    """An alert as the store would build it, for the texts' tests."""
    job_id = uuid.uuid4()
    fields: dict[str, Any] = {
        "alert_id": job_id,
        "thread_id": job_id,
        "job_id": job_id,
        "patient_ref": "P-0123abcd",
        "created_at": datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        "ranking": ranking,
        "risk": RiskLevel.HIGH,
        "melanoma_alert": True,
        "photo_kind": PhotoKind.CLINICAL,
        "answers": answers,
        "model_version": "m1",
        "earlier_results": [],
        "thread_photos": [],
        "state": AlertState.OPEN,
        "claimed_by": None,
        "claimed_at": None,
        "resolved_by": None,
        "resolved_at": None,
        "resolution": None,
        "reminded_at": None,
        "escalated_at": None,
    }
    return AlertView(**{**fields, **changes})


def test_the_alert_text_lists_the_classes_above_one_percent_and_says_why_it_is_high_risk() -> None:
    ranking = [
        {"code": "mel", "name": "Melanoma", "probability": 0.62},
        {"code": "nv", "name": "Melanocytic nevus", "probability": 0.3},
        {"code": "bkl", "name": "Benign keratosis", "probability": 0.075},
        {"code": "df", "name": "Dermatofibroma", "probability": 0.004},
        {"code": "vasc", "name": "Vascular lesion", "probability": 0.001},
    ]
    text = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(age=60)))
    assert "62%  Melanoma" in text and "8%  Benign keratosis" in text
    assert "Dermatofibroma" not in text and "Vascular" not in text
    assert not [line for line in text.splitlines() if line.startswith("0%")], "no 0% lines"
    assert "because melanoma is the most likely class" in text
    assert "Photo: clinical" in text and "P-0123abcd, no earlier results" in text
    assert "Open: nobody has claimed it yet" in text


def test_a_long_pending_list_stops_at_a_whole_row_and_says_how_many_more() -> None:
    """Telegram refuses a message whose HTML is cut mid-tag: a long backlog is listed in whole rows, under the
    length limit, and the rest counted."""
    finding = "HIGH risk, melanoma alert, most likely Melanoma (62%)"
    rows = [
        (f"/case_{uuid.uuid4().hex[:8]}", f"patient P-{n:08d}", finding, "open, not claimed", 3600.0 * n)
        for n in range(60)
    ]
    text = clinician_texts.pending_list(rows)
    assert len(text) <= 4096
    listed = text.count("/case_")
    assert 0 < listed < 60 and listed == text.count("Melanoma (62%)")
    assert text.endswith(clinician_texts.PENDING_MORE.format(count=60 - listed))
    assert "more" not in clinician_texts.pending_list(rows[:3])


def test_a_pending_line_gives_the_risk_the_most_likely_type_and_a_case_command_telegram_can_link() -> None:
    ranking = [
        {"code": "mel", "name": "Melanoma", "probability": 0.62},
        {"code": "nv", "name": "Nevus", "probability": 0.3},
    ]
    finding = clinician_texts.pending_finding("high", ranking, melanoma_alert=True)
    assert finding == "HIGH risk, melanoma alert, most likely Melanoma (62%)"
    assert (
        clinician_texts.pending_finding("high", ranking[1:], melanoma_alert=False)
        == "HIGH risk, most likely Nevus (30%)"
    )
    text = clinician_texts.pending_list([("/case_81da1f41", "patient P-0123abcd", finding, "open, not claimed", 600.0)])
    (command_line,) = [line for line in text.splitlines() if "/case" in line]
    assert command_line.split() == ["/case_81da1f41"], "one word: Telegram links all of it"


def test_the_alert_shows_the_age_range_the_patient_chose_not_the_models_representative_age() -> None:
    ranking = [{"code": "mel", "name": "Melanoma", "probability": 0.62}]
    for age_range, shown in questionnaire_texts.AGE_BUTTONS.items():
        text = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(age=age_range.representative_age)))
        assert f"age: {shown}" in text, shown
    text = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(age=85)))
    assert "age: 80 or over" in text and "85" not in text.split("Patient's answers")[1].splitlines()[0]


def test_an_alert_waiting_for_a_better_photo_says_so_and_keeps_the_resolving_buttons() -> None:
    from shared.clinic.buttons import alert_keyboard

    ranking = [{"code": "mel", "name": "Melanoma", "probability": 0.62}]
    asked_at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    waiting = dict(state=AlertState.AWAITING_PHOTO, claimed_by="Dr A", photo_asked_by="Dr A", photo_asked_at=asked_at)
    told = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(), **waiting, patient_told_at=asked_at))
    assert "Waiting for the better photo the patient was asked for by Dr A" in told and "not resolved" in told
    untold = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(), **waiting))
    assert "the patient could not be told" in untold
    labels = [
        b.text for row in alert_keyboard(alert_view(ranking, PatientAnswers(), **waiting)).inline_keyboard for b in row
    ]
    assert labels == [clinician_texts.CLINICIAN_BUTTONS[name] for name in ("no_action", "appointment", "write")]


def test_working_time_counts_only_the_clinics_working_hours() -> None:
    calendar = WorkingCalendar.parse("08:00-18:00", "mon-fri", "Europe/Berlin")
    friday_evening = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # 17:00 in Berlin: one working hour left
    monday_morning = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 11:00 in Berlin: three working hours in
    assert calendar.working_seconds(friday_evening, monday_morning) == 4 * 3600
    assert calendar.day_seconds == 10 * 3600
    assert (
        AROUND_THE_CLOCK.working_seconds(friday_evening, monday_morning)
        == (monday_morning - friday_evening).total_seconds()
    )
    assert percentile([5, 1, 3, 2, 4], 0.95) == 5 and percentile([], 0.5) is None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxUser]:
    with running_sandbox(TOKEN, tmp_path_factory.mktemp("alerts-sandbox")) as user:
        yield user


@pytest.fixture(scope="module")
def telegram(sandbox: SandboxUser, redis_url: str) -> Iterator[TelegramClient]:
    settings = Settings(
        telegram_token=TOKEN,  # type: ignore[arg-type]
        telegram_api_url=sandbox.api_url,
        redis_url=redis_url,
        redis_key_prefix=f"alerts-{uuid.uuid4().hex[:8]}:",
    )
    client = TelegramClient.open(settings)
    yield client
    client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, AlertStore]]:
    """The job and alert stores on one migrated audit database: SQLite, and PostgreSQL (its row locking and
    conditional updates are what two clinicians pressing at once meet in production)."""
    if request.param == "sqlite":
        engine = migrated_engine(f"sqlite:///{tmp_path / 'alerts.sqlite3'}")
        yield JobStore(engine), AlertStore(engine)
        return
    with postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        engine = migrated_engine(url)
        yield JobStore(engine), AlertStore(engine)
        engine.dispose()


@pytest.fixture
def sender(telegram: TelegramClient, stores: tuple[JobStore, AlertStore], sandbox: SandboxUser) -> ClinicianAlertSender:
    sandbox.clear_faults()
    # Called directly, not by a task that retries later: it waits for Telegram's budgets like a patient's answer.
    return ClinicianAlertSender(telegram=telegram, alerts=stores[1], clinician_chat_ids=CLINICIANS, max_wait_s=10)


def finished_result(
    sandbox: SandboxUser,
    jobs: JobStore,
    classifier: Classifier,
    photo: Path,
    chat_ref: str,
    threads: ThreadPolicy = DEFAULT_THREADS,
    file_id: str | None = None,
) -> uuid.UUID:
    """A patient's photo through the job store as the worker records it: received, analysed, combined (with
    its alert's outbox row in the same transaction when it is high risk)."""
    data = photo.read_bytes()
    sent = sandbox.send_photo(4242, data)
    job = jobs.record_received(
        chat_ref=chat_ref, media_kind=MediaKind.PHOTO, file_unique_id=sent["photo"][-1]["file_unique_id"]
    )
    jobs.mark_running(job.id)
    prediction = screen_photo(data, classifier)
    jobs.mark_done(job.id, prediction, image_sha256="0" * 64)
    combined = classifier.prediction_from_ranking(
        prediction.to_dict()["ranking"], prediction.photo_kind, PatientAnswers()
    )
    alert = NewClinicianAlert(file_id or sent["photo"][-1]["file_id"], MediaKind.PHOTO, 4242, threads)
    jobs.mark_combined(job.id, combined, clinician_alert=alert)
    return job.id


def alert_texts(sandbox: SandboxUser, chat: int, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return [m for m in sandbox.bot_messages(chat) if f"Job: {job_id}" in m.get("text", "")]


def test_a_high_risk_result_commits_with_its_alert_and_a_low_risk_one_has_none(
    sandbox: SandboxUser, stores: tuple[JobStore, AlertStore], classifier: Classifier, photos_by_risk: dict[str, Path]
) -> None:
    jobs, alerts = stores
    high = finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "a" * 32)
    low = finished_result(sandbox, jobs, classifier, photos_by_risk["low"], "a" * 32)
    alert = alerts.for_job(high)
    assert alert is not None and alert.state == AlertState.OPEN and alert.thread_id == alert.id
    assert alert.sealed_photo and "sandbox-file" not in alert.sealed_photo, "the file id is sealed at rest"
    assert alert.sealed_contact and "4242" not in alert.sealed_contact
    assert alerts.for_job(low) is None
    assert alerts.unsent_jobs() == [high]


def test_each_clinician_chat_gets_the_alert_once_with_its_four_buttons(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "b" * 32)
    assert sender.notify_clinicians(job_id) == len(CLINICIANS)
    assert sender.notify_clinicians(job_id) == 0, "a redelivered task sends nothing again"
    assert stores[1].unsent_jobs() == []
    for chat in CLINICIANS:
        (text,) = alert_texts(sandbox, chat, job_id)
        assert text["reply_to_message"]["photo"], "the details and buttons sit under the photo"
        for label in clinician_texts.CLINICIAN_BUTTONS.values():
            assert button_data(text, label) is not None, label
        assert clinician_texts.POSSIBLY_REPEATED not in text["text"]


def test_an_alert_that_would_wait_on_telegram_hands_the_worker_back_and_its_attempt_does_not_count(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    """A burst of alerts meets Telegram's one message a second per chat: a worker process must not sit waiting
    (the patients' answers would wait behind it); the task retries later, and the try is not spent."""
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "w" * 32)
    sender = dataclasses.replace(sender, max_wait_s=ALERT_MAX_WAIT_S)  # as in a worker process
    limiter = sender.telegram.limiter
    assert limiter.redis_url is not None and limiter.max_wait_s is not None and limiter.max_wait_s > 3
    pause_s = ALERT_MAX_WAIT_S + 2  # shorter than what a patient's answer would wait for, longer than an alert
    redis.Redis.from_url(limiter.redis_url).set(limiter.pause_key, int((time.time() + pause_s) * 1000), px=5000)
    with pytest.raises(WaitTooLong):
        sender.notify_clinicians(job_id)
    alert = stores[1].for_job(job_id)
    assert alert is not None and alert.sent_at is None
    assert stores[1].deliveries([alert.id]) == [], "asked the budget first: nothing recorded, nothing to take back"
    assert all(alert_texts(sandbox, chat, job_id) == [] for chat in CLINICIANS)
    time.sleep(pause_s)
    assert sender.notify_clinicians(job_id) == len(CLINICIANS), "sent once the pause is over"


def test_an_alert_told_to_wait_after_its_attempt_was_recorded_takes_the_attempt_back(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    """The budget said go, then another process took the slot while the explanation picture was drawn: the
    call is told to wait, nothing was sent, and the attempt does not count."""
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "x" * 32)
    limiter = sender.telegram.limiter
    assert limiter.redis_url is not None
    pause_s = ALERT_MAX_WAIT_S + 2

    def explain_while_the_slot_goes(view: AlertView, photo: bytes) -> bytes | None:
        redis.Redis.from_url(str(limiter.redis_url)).set(
            limiter.pause_key, int((time.time() + pause_s) * 1000), px=5000
        )
        return explanation_for_clinicians(classifier, view, photo)

    sender = dataclasses.replace(sender, max_wait_s=ALERT_MAX_WAIT_S, explain=explain_while_the_slot_goes)
    # Earlier tests' alerts to these chats: their budget must say "go" when the alert asks it.
    wait_until(lambda: all(sender.telegram.chat_wait_s(chat, 2) == 0 for chat in CLINICIANS), 10, what="budget")
    with pytest.raises(WaitTooLong):
        sender.notify_clinicians(job_id)
    alert = stores[1].for_job(job_id)
    assert alert is not None and alert.sent_at is None
    deliveries = stores[1].deliveries([alert.id])
    assert deliveries, "the attempt was recorded before the call"
    assert all(d.attempts == 0 and d.message_id is None and d.attempt_started_at is None for d in deliveries)
    assert all(alert_texts(sandbox, chat, job_id) == [] for chat in CLINICIANS)
    time.sleep(pause_s)
    assert sender.notify_clinicians(job_id) == len(CLINICIANS), "sent once the pause is over (picture drawn once)"


def test_a_lost_response_is_resent_marked_as_a_possible_repeat_and_a_refused_call_plainly(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "c" * 32)
    # The first clinician's text is executed but its answer lost: nobody knows whether it arrived.
    sandbox.inject_fault("sendMessage", count=1, kind="drop")
    with pytest.raises(OutcomeUnknown):
        sender.notify_clinicians(job_id)  # the task retries it
    assert len(alert_texts(sandbox, CLINICIANS[0], job_id)) == 1, "it did arrive"
    assert len(alert_texts(sandbox, CLINICIANS[1], job_id)) == 1, "one chat's trouble does not hold back the other"
    assert sender.notify_clinicians(job_id) == 1, "the other chat was served meanwhile; only the unknown one is resent"
    first, repeated = alert_texts(sandbox, CLINICIANS[0], job_id)
    assert (
        clinician_texts.POSSIBLY_REPEATED in repeated["text"] and clinician_texts.POSSIBLY_REPEATED not in first["text"]
    )
    assert first["reply_to_message"]["message_id"] == repeated["reply_to_message"]["message_id"], "the photo went once"
    (other,) = alert_texts(sandbox, CLINICIANS[1], job_id)
    assert clinician_texts.POSSIBLY_REPEATED not in other["text"]
    assert sender.notify_clinicians(job_id) == 0

    # A call Telegram refused (429, then retried after retry_after) or never received (503) sent nothing:
    # exactly one plain alert per chat.
    refused = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "9" * 32)
    sandbox.inject_fault("sendMessage", count=1, kind="429", retry_after=1)
    sandbox.inject_fault("sendPhoto", count=1, kind="5xx", status=503)
    assert sender.notify_clinicians(refused) == 2
    for chat in CLINICIANS:
        (text,) = alert_texts(sandbox, chat, refused)
        assert clinician_texts.POSSIBLY_REPEATED not in text["text"]


def test_passing_trouble_however_long_never_gives_an_alert_up(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    """Telegram out of reach for longer than the give-up bound (each try's answer lost): the alert is still
    owed to every chat, and goes out once Telegram is back; only refusals count toward giving up."""
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "t" * 32)
    tries = MAX_DELIVERY_ATTEMPTS + 2
    sandbox.inject_fault("sendPhoto", count=tries * len(CLINICIANS), kind="drop")
    for _ in range(tries):
        with pytest.raises(OutcomeUnknown):
            sender.notify_clinicians(job_id)
    alert = stores[1].for_job(job_id)
    assert alert is not None and alert.sent_at is None, "still owed"
    assert stores[1].unsent_jobs() == [job_id], "the sweep keeps queuing it"
    assert sender.notify_clinicians(job_id) == len(CLINICIANS)
    for chat in CLINICIANS:
        (text,) = alert_texts(sandbox, chat, job_id)
        assert clinician_texts.POSSIBLY_REPEATED in text["text"], "the photo may have arrived before: said so"
    assert all(d.attempts <= 1 for d in stores[1].deliveries([alert.id]))


def test_a_chat_that_keeps_refusing_is_given_up_and_counted_and_the_others_are_served(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    """A clinician chat the bot was removed from (403 on every call) is given up after the bound, logged and
    counted in ``skinsense_clinician_deliveries_given_up_total``; the other chat has the alert."""
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "r" * 32)
    given_up_before = REGISTRY.get_sample_value("skinsense_clinician_deliveries_given_up_total") or 0.0
    sandbox.inject_fault("sendPhoto", count=1, kind="403")  # the first chat's photo, on every try below
    sender.notify_clinicians(job_id)  # a refusal is not retried by the task: the sweep tries again
    for _ in range(MAX_DELIVERY_ATTEMPTS - 1):
        sandbox.inject_fault("sendPhoto", count=1, kind="403")
        assert sender.notify_clinicians(job_id) == 0
    alert = stores[1].for_job(job_id)
    assert alert is not None and alert.sent_at is not None, "nothing more to do: one chat served, one given up"
    assert alert_texts(sandbox, CLINICIANS[0], job_id) == []
    assert len(alert_texts(sandbox, CLINICIANS[1], job_id)) == 1
    given_up = REGISTRY.get_sample_value("skinsense_clinician_deliveries_given_up_total") or 0.0
    assert given_up == given_up_before + 1


def test_a_photo_telegram_refuses_goes_out_as_the_text_alone_saying_so(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    job_id = finished_result(
        sandbox, stores[0], classifier, photos_by_risk["alert"], "p" * 32, file_id="a-file-telegram-no-longer-has"
    )
    assert sender.notify_clinicians(job_id) == len(CLINICIANS)
    for chat in CLINICIANS:
        (text,) = alert_texts(sandbox, chat, job_id)
        assert clinician_texts.PHOTO_NOT_ATTACHED in text["text"]
        assert "reply_to_message" not in text, "no photo to sit under"
        for label in clinician_texts.CLINICIAN_BUTTONS.values():
            assert button_data(text, label) is not None, label
    assert stores[1].unsent_jobs() == []


def test_three_high_risk_photos_within_the_hour_make_one_thread_and_the_limit_holds_back_the_rest(
    sandbox: SandboxUser,
    stores: tuple[JobStore, AlertStore],
    sender: ClinicianAlertSender,
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    jobs, alerts = stores
    threads = ThreadPolicy(window_s=3600, forwards=2)
    job_ids = [finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "d" * 32, threads) for _ in range(3)]
    for job_id in job_ids:
        sender.notify_clinicians(job_id)
    first = alerts.for_job(job_ids[0])
    assert first is not None
    thread = alerts.thread(first.id)
    assert [a.job_id for a in thread] == job_ids and {a.thread_id for a in thread} == {first.id}
    assert [a.forwarded for a in thread] == [True, True, False], "two forwarded, the third held back"
    for chat in CLINICIANS:
        with_buttons = [
            m
            for m in sandbox.bot_messages(chat)
            if m.get("reply_markup") and any(str(j) in m.get("text", "") for j in job_ids)
        ]
        assert len(with_buttons) == 1, "one alert with buttons for the thread"
        assert "3 high-risk photos from this patient" in with_buttons[0]["text"]
        assert "1 not forwarded" in with_buttons[0]["text"]
        second_photo = [m for m in sandbox.bot_messages(chat) if str(job_ids[1]) in m.get("caption", "")]
        assert (
            len(second_photo) == 1
            and second_photo[0]["reply_to_message"]["message_id"] == with_buttons[0]["message_id"]
        )
        assert not [m for m in sandbox.bot_messages(chat) if str(job_ids[2]) in m.get("caption", "")]
    assert alerts.unsent_jobs() == []


def test_a_claim_and_a_resolution_each_count_once(
    sandbox: SandboxUser, stores: tuple[JobStore, AlertStore], classifier: Classifier, photos_by_risk: dict[str, Path]
) -> None:
    jobs, alerts = stores
    alert = alerts.for_job(finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "e" * 32))
    assert alert is not None
    first = alerts.claim(alert.id, "Dr A")
    second = alerts.claim(alert.id, "Dr B")
    assert first is not None and first.changed and second is not None and not second.changed
    assert second.alert.claimed_by == "Dr A"
    resolved = alerts.resolve(alert.id, AlertResolution.APPOINTMENT, "Dr B")
    again = alerts.resolve(alert.id, AlertResolution.NO_ACTION, "Dr A")
    assert resolved is not None and resolved.changed and again is not None and not again.changed
    assert (again.alert.resolved_by, again.alert.resolution) == ("Dr B", AlertResolution.APPOINTMENT)
    assert alerts.contact(alert.id) is not None and alerts.contact(alert.id).chat_id == 4242  # type: ignore[union-attr]
    alerts.erase_secrets(alert.id)
    assert alerts.contact(alert.id) is None
    (times,) = alerts.review_times()
    assert (
        times.to_claim_s is not None and times.to_resolution_s is not None and times.to_resolution_s >= times.to_claim_s
    )


def test_reminders_and_escalations_are_marked_once_however_often_the_sweep_runs(
    sandbox: SandboxUser, stores: tuple[JobStore, AlertStore], classifier: Classifier, photos_by_risk: dict[str, Path]
) -> None:
    jobs, alerts = stores
    alert = alerts.for_job(finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "f" * 32))
    assert alert is not None
    soon = datetime.now(UTC) + timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(hours=5)
    assert alerts.mark_reminders_due(AROUND_THE_CLOCK, 4, now=soon) == []
    assert alerts.mark_reminders_due(AROUND_THE_CLOCK, 4, now=later) == [alert.id]
    assert alerts.mark_reminders_due(AROUND_THE_CLOCK, 4, now=later) == [], "beat running twice reminds once"
    assert alerts.mark_escalations_due(AROUND_THE_CLOCK, 2, now=later) == []
    two_days = datetime.now(UTC) + timedelta(days=2, minutes=1)
    assert alerts.mark_escalations_due(AROUND_THE_CLOCK, 2, now=two_days) == [alert.id]
    assert alerts.mark_escalations_due(AROUND_THE_CLOCK, 2, now=two_days) == []
    claimed = alerts.load(alert.id)
    assert claimed is not None and claimed.reminded_at is not None and claimed.escalated_at is not None
    assert claimed.sent_at is None, "marked to be sent again (to the lead chat)"
    assert jobs.load(claimed.job_id) is not None and jobs.load(claimed.job_id).status == JobStatus.DONE  # type: ignore[union-attr]


def test_the_beat_sweeps_clinician_alerts_on_the_clinicians_queue() -> None:
    from shared.queue import CLINICIAN_SWEEP_TASK, CLINICIANS_QUEUE, TASK_ROUTES
    from worker.celery_app import app

    (entry,) = [entry for entry in app.conf.beat_schedule.values() if entry["task"] == CLINICIAN_SWEEP_TASK]
    assert entry["schedule"] == Settings().clinician_sweep_interval_s
    assert TASK_ROUTES[CLINICIAN_SWEEP_TASK]["queue"] == CLINICIANS_QUEUE


def test_the_alert_shows_the_photo_and_its_explanation_picture_as_one_album_above_the_details(
    sandbox: SandboxUser,
    telegram: TelegramClient,
    stores: tuple[JobStore, AlertStore],
    classifier: Classifier,
    photos_by_risk: dict[str, Path],
) -> None:
    sender = ClinicianAlertSender(
        telegram,
        stores[1],
        CLINICIANS,
        explain=lambda view, photo: explanation_for_clinicians(classifier, view, photo),
        max_wait_s=10,
    )
    job_id = finished_result(sandbox, stores[0], classifier, photos_by_risk["alert"], "g" * 32)
    earlier_uploads = len(sandbox.calls("sendMediaGroup"))  # the sandbox serves the whole module
    assert sender.notify_clinicians(job_id) == len(CLINICIANS)
    for chat in CLINICIANS:
        (text,) = alert_texts(sandbox, chat, job_id)
        first = text["reply_to_message"]
        album = [m for m in sandbox.bot_messages(chat) if m.get("media_group_id") == first["media_group_id"]]
        assert len(album) == 2 and all(m["photo"] for m in album), "the photo and the explanation picture"
        assert "explanation picture" in first["caption"] and "caption" not in album[1]
    uploads = sandbox.calls("sendMediaGroup")[earlier_uploads:]
    assert len(uploads) == len(CLINICIANS)
    assert "attach://" in str(uploads[0]["parameters"].get("media")), "drawn and uploaded for the first chat"
    assert "attach://" not in str(uploads[-1]["parameters"].get("media")), "then sent again by its file id"


def test_delete_and_retention_leave_an_alert_without_its_patient_and_out_of_the_open_work(
    sandbox: SandboxUser, classifier: Classifier, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    from bot.patients import PatientStore
    from shared.retention import purge_patient_data

    engine = migrated_engine(f"sqlite:///{tmp_path / 'erase.sqlite3'}")
    jobs, alerts = JobStore(engine), AlertStore(engine)
    erased = alerts.for_job(finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "h" * 32))
    kept = alerts.for_job(finished_result(sandbox, jobs, classifier, photos_by_risk["alert"], "i" * 32))
    assert erased is not None and kept is not None
    for patient in ("h", "i"):  # a press refused in each patient's chat, recorded by its reference
        alerts.record_action(
            alert_id=None, action="claim", chat=f"ref:{patient * 32}", user_id=None, user_name=None, outcome="refused"
        )

    def refused_chats() -> list[str]:
        with Session(engine) as session:
            return sorted(a.chat for a in session.exec(select(ClinicianAction)).all())

    PatientStore(engine).erase_patient("h" * 32)
    assert refused_chats() == [f"ref:{'i' * 32}", "ref:purged"]
    after = alerts.load(erased.id)
    assert (
        after is not None and after.chat_ref == "purged" and after.sealed_photo is None and after.sealed_contact is None
    )
    assert [a.id for a in alerts.pending()] == [kept.id] and alerts.unsent_jobs() == [kept.job_id], "not sent any more"
    assert alerts.mark_reminders_due(AROUND_THE_CLOCK, 0.001, now=datetime.now(UTC) + timedelta(days=1)) == [kept.id]

    purge_patient_data(engine, older_than_days=183, now=datetime.now(UTC) + timedelta(days=200))
    assert refused_chats() == ["ref:purged", "ref:purged"]
    purged = alerts.load(kept.id)
    assert purged is not None and purged.chat_ref == "purged" and purged.sealed_contact is None
    assert purged.reminded_at is not None, "the clinic's own record of the alert stays"
