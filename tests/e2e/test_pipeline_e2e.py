"""End to end on real parts: a patient's photo through the bot, Redis, a Celery worker and back.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from PIL import Image
from sqlmodel import Session, col, select

from models.serving.inference import read_metadata
from shared.audit import ClinicianAlertDelivery, InboundUpdate, Job, JobStatus, MediaKind, chat_reference
from shared.config import Settings
from shared.images import MAX_FILE_BYTES
from shared.job_store import Delivery
from shared.labels import PhotoKind, RiskLevel
from shared.outcomes import RefusalCode
from shared.queue import ClassifyPhotoRequest, create_celery_app, enqueue_classification
from shared.sealing import seal
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts
from shared.texts.patient import MAX_FILE_MB
from skinsense.sandbox import plain_text
from tests.auxil.patient import consent, send_photo_skipping_questions, skip_questionnaire
from tests.auxil.sandbox_user import is_questionnaire
from tests.auxil.services import postgres_database, wait_until
from tests.auxil.stack import CHAT_HASH_KEY, CLINICIANS, RunningStack, running_stack
from worker.flow import MAX_DELIVERY_ATTEMPTS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp(f"stack-{request.param}")
    with (
        audit_database(request, log_dir) as database_url,
        running_stack(redis_url, database_url, log_dir) as running,
    ):
        yield running


def audit_database(request: pytest.FixtureRequest, folder: Path) -> contextlib.AbstractContextManager[str]:
    if request.param == "sqlite":
        return contextlib.nullcontext(f"sqlite:///{folder / 'audit.sqlite3'}")
    return postgres_database(request.getfixturevalue("postgres_admin_url"))


def job_for_file(stack: RunningStack, file_unique_id: str) -> Job:
    def find() -> Job | None:
        with Session(stack.engine) as session:
            return session.exec(select(Job).where(Job.telegram_file_unique_id == file_unique_id)).first()

    return wait_until(find, 30, what=f"audit row for {file_unique_id}")


def finished_job(stack: RunningStack, file_unique_id: str) -> Job:
    def done() -> Job | None:
        job = job_for_file(stack, file_unique_id)
        return job if job.replied_at is not None else None

    return wait_until(done, 60, what="the job to be answered")


def broker_app(stack: RunningStack) -> Celery:
    return create_celery_app(stack.settings())


def classify_cli(path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "classify", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(completed.stdout.splitlines()[0]))


def test_photo_gets_the_ranking_that_classify_gives(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    path = photos_by_risk["alert"]
    chat = 1001
    sent = send_photo_skipping_questions(stack.user, chat, path.read_bytes())
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    expected = classify_cli(path)
    kind = PhotoKind(expected["photo_kind"])
    expected_result = result_texts.PatientResult(
        ranking=expected["ranking"],
        risk=RiskLevel(expected["risk"]),
        melanoma_alert=expected["melanoma_alert"],
        photo_kind=kind,
        malignant_told_low_per_100=read_metadata().kinds[kind].malignant_told_low_per_100,
    )
    expected_text = plain_text(result_texts.result(expected_result), "HTML")
    assert reply["text"] == expected_text, stack.logs()
    assert reply["edits"] == [patient_texts.ANALYSING], "the 'analysing' message itself is edited into the result"
    job = finished_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.ranking == expected["ranking"]
    assert (job.risk, job.melanoma_alert, job.model_version) == (
        expected["risk"],
        expected["melanoma_alert"],
        expected["model_version"],
    )


def test_audit_row_is_complete_and_pseudonymous(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 1002
    data = photos_by_risk["low"].read_bytes()
    sent = send_photo_skipping_questions(stack.user, chat, data)
    stack.user.wait_for_reply(chat, sent["message_id"])
    job = finished_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.status == JobStatus.DONE and job.error_code is None
    assert job.chat_ref == chat_reference(chat, CHAT_HASH_KEY) and str(chat) not in job.chat_ref
    assert job.image_sha256 == hashlib.sha256(data).hexdigest()
    assert job.received_at <= job.queued_at <= job.started_at <= job.finished_at <= job.replied_at  # type: ignore[operator]
    assert job.model_version and job.ranking and len(job.ranking) == 7 and job.risk == "low"
    assert job.delivery_attempts == 1
    assert job.clinicians_notified is None


def test_clinicians_get_the_alert_exactly_for_high_risk(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    low = send_photo_skipping_questions(stack.user, 1003, photos_by_risk["low"].read_bytes())
    stack.user.wait_for_reply(1003, low["message_id"])
    high = send_photo_skipping_questions(stack.user, 1004, photos_by_risk["alert"].read_bytes())
    stack.user.wait_for_reply(1004, high["message_id"])
    high_job = finished_job(stack, high["photo"][-1]["file_unique_id"])
    low_job = finished_job(stack, low["photo"][-1]["file_unique_id"])

    def alerts(chat: int, job_id: uuid.UUID) -> list[dict[str, Any]]:
        return [m for m in stack.user.bot_messages(chat) if str(job_id) in m.get("text", "")]

    for clinician in CLINICIANS:
        forwarded = wait_until(functools.partial(alerts, clinician, high_job.id), 60, what="the clinician alert")
        assert len(forwarded) == 1
        assert "MELANOMA ALERT" in forwarded[0]["text"] and forwarded[0]["reply_to_message"]["photo"]
        # The low-risk photo went through the same queue first and was never forwarded.
        assert alerts(clinician, low_job.id) == []
    with Session(stack.engine) as session:
        told = session.exec(
            select(ClinicianAlertDelivery.chat_id).where(col(ClinicianAlertDelivery.message_id).is_not(None))
        ).all()
    assert set(CLINICIANS) <= set(told)
    # The patients get their explanation pictures (captioned), never the clinicians' alert.
    assert alerts(1003, low_job.id) == [] and alerts(1004, high_job.id) == [], "alerts go to clinicians only"


def test_redelivered_task_replies_once(stack: RunningStack, photos_by_risk: dict[str, Path]) -> None:
    chat = 1005
    sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["low"].read_bytes())
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    job = finished_job(stack, sent["photo"][-1]["file_unique_id"])
    enqueue_classification(ClassifyPhotoRequest(job_id=job.id), broker_app(stack))
    wait_until(lambda: f"job {job.id}: already answered" in stack.worker.output(), 60, what="the redelivery")
    edits = [
        c for c in stack.user.calls("editMessageText") if int(c["parameters"]["message_id"]) == reply["message_id"]
    ]
    assert len(edits) == 1
    assert len(stack.user.replies_to(chat, sent["message_id"])) == 1


def test_flood_control_is_waited_out_and_the_reply_arrives(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 1006
    consent(stack.user, chat)
    # No taps after this (they edit messages too): the result goes out at the questionnaire's timeout.
    stack.user.inject_fault("editMessageText", count=1, retry_after=2)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    reply = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=120)
    attempts = [
        c for c in stack.user.calls("editMessageText") if int(c["parameters"]["message_id"]) == reply["message_id"]
    ]
    assert len(attempts) == 2
    assert attempts[1]["time"] - attempts[0]["time"] >= 2.0, "the worker waits what retry_after says"
    assert finished_job(stack, sent["photo"][-1]["file_unique_id"]).status == JobStatus.DONE


@pytest.mark.parametrize(
    "fields",
    [
        {
            "sticker": {
                "file_id": "s1",
                "file_unique_id": "s1u",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "type": "regular",
            }
        },
        {"voice": {"file_id": "v1", "file_unique_id": "v1u", "duration": 3}},
        {"video": {"file_id": "d1", "file_unique_id": "d1u", "width": 640, "height": 480, "duration": 5}},
        {"text": "is this mole dangerous?"},
    ],
)
def test_non_photo_messages_get_a_short_help_reply(stack: RunningStack, fields: dict[str, Any]) -> None:
    chat = 1100 + len(str(fields))
    consent(stack.user, chat)
    sent = stack.user.send_message(chat, fields)
    expected = patient_texts.NOT_A_PHOTO_TEXT if "text" in fields else patient_texts.NOT_A_PHOTO
    assert stack.user.wait_for_reply(chat, sent["message_id"], final=False)["text"] == expected


def test_start_and_help_explain_the_screening_aid(stack: RunningStack) -> None:
    consent(stack.user, 1200)
    for command, expected in (("/start", patient_texts.START), ("/help", patient_texts.help_text(MAX_FILE_MB))):
        sent = stack.user.send_text(1200, command)

        def replies_with(text: str) -> list[dict[str, Any]]:
            return [m for m in stack.user.bot_messages(1200) if m["text"] == text]

        reply = wait_until(functools.partial(replies_with, expected), 30, what=f"reply to {command}")
        assert "not a diagnosis" in reply[0]["text"], sent


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    from tests.shared.test_images import png_header_only

    return png_header_only(40_000, 40_000)


@pytest.mark.parametrize(
    ("name", "file_name", "mime_type", "code"),
    [
        ("pdf", "scan.pdf", "application/pdf", "not_an_image"),
        ("oversized", "huge.jpg", "image/jpeg", "too_large"),
        ("truncated", "cut.jpg", "image/jpeg", "corrupt"),
        ("bomb", "bomb.png", "image/png", "too_many_pixels"),
        ("text_as_jpeg", "fake.jpg", "image/jpeg", "not_an_image"),
    ],
)
def test_bad_documents_get_a_clear_reason_and_are_audited(
    stack: RunningStack, photos_by_risk: dict[str, Path], name: str, file_name: str, mime_type: str, code: str
) -> None:
    real = photos_by_risk["low"].read_bytes()
    content = {
        "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "oversized": real + b"\0" * (MAX_FILE_BYTES + 1),
        "truncated": real[: len(real) // 3],
        "bomb": _bomb(),
        "text_as_jpeg": b"hello, this is not a photo",
    }[name]
    chat = 1300 + len(name)
    consent(stack.user, chat)
    sent = stack.user.send_document(chat, content, file_name, mime_type)
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    sent_as = "this PDF" if name == "pdf" else "this file"
    assert reply["text"] == plain_text(patient_texts.rejection(RefusalCode(code), MAX_FILE_MB, sent_as), None), (
        stack.logs()
    )
    job = finished_job(stack, sent["document"]["file_unique_id"])
    assert (job.status, job.error_code) == (JobStatus.REJECTED, code)
    assert job.error_reason
    if code in ("too_large", "not_an_image") and name != "text_as_jpeg":
        downloads = [
            c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == sent["document"]["file_id"]
        ]
        assert downloads == [], "refused from the metadata alone, without downloading"


def test_photo_that_is_not_a_lesion_is_refused_kindly(stack: RunningStack) -> None:
    chat = 1400
    consent(stack.user, chat)
    page = Image.new("L", (640, 480), 235)
    page.paste(20, (50, 50, 590, 70))
    sent = stack.user.send_photo(chat, _png(page))
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    assert reply["text"] == patient_texts.rejection(RefusalCode.NOT_A_LESION, MAX_FILE_MB, "this photo")
    assert finished_job(stack, sent["photo"][-1]["file_unique_id"]).error_code == "not_a_lesion"
    # No question stands about the refused photo: the one asked while it was analysed is withdrawn.
    wait_until(lambda: every_update_handled(stack), 30, what="the bot to finish with the photo")
    wait_until(lambda: not [m for m in stack.user.bot_messages(chat) if is_questionnaire(m)], 30, what="no questions")


def test_tiny_photo_is_refused_without_download(stack: RunningStack) -> None:
    chat = 1401
    consent(stack.user, chat)
    sent = stack.user.send_photo(chat, _png(Image.new("RGB", (20, 20), (200, 150, 130))))
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    assert reply["text"] == patient_texts.rejection(RefusalCode.TOO_SMALL, MAX_FILE_MB, "this photo")
    assert finished_job(stack, sent["photo"][-1]["file_unique_id"]).status == JobStatus.REJECTED


FLOWER_AUTH = ("ops", "e2e-flower-secret")


@pytest.fixture(scope="module")
def flower_url(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Flower as `skinsense flower` runs it, on the stack's broker, once it lists the stack's worker."""
    import httpx

    from skinsense.stack import flower_command, flower_environment
    from tests.auxil.services import ChildProcess, free_port, port_open

    port = free_port()
    settings = Settings(flower_port=port, flower_user=FLOWER_AUTH[0], flower_password=FLOWER_AUTH[1])  # type: ignore[arg-type]
    env = {**stack.env, **flower_environment(settings)}
    flower = ChildProcess("flower", flower_command(settings), env, tmp_path_factory.mktemp("flower"))
    try:
        wait_until(lambda: port_open(port), 60, what="Flower")
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: [
                name
                for name in httpx.get(f"{url}/api/workers", auth=FLOWER_AUTH, timeout=10).json()
                if name.startswith("e2e@")
            ],
            60,
            interval_s=1,
            what="Flower to list the worker",
        )
        yield url
    finally:
        flower.stop()


def test_flower_sees_the_worker_behind_basic_auth(flower_url: str) -> None:
    import httpx

    api = f"{flower_url}/api/workers"
    assert httpx.get(api, timeout=10).status_code == 401
    workers = [name for name in httpx.get(api, auth=FLOWER_AUTH, timeout=10).json() if name.startswith("e2e@")]
    assert workers


def test_flower_metrics_need_the_password(flower_url: str) -> None:
    import httpx

    assert httpx.get(f"{flower_url}/metrics", timeout=10).status_code == 401
    metrics = httpx.get(f"{flower_url}/metrics", auth=FLOWER_AUTH, timeout=10)
    assert metrics.status_code == 200 and "flower_events_total" in metrics.text
    assert httpx.get(f"{flower_url}/healthcheck", timeout=10).text == "OK", "compose's healthcheck needs no password"


def test_flower_shows_job_ids_only_never_chat_or_file_ids(
    stack: RunningStack, flower_url: str, photos_by_risk: dict[str, Path]
) -> None:
    import httpx

    chat = 987_650_321  # a chat id that cannot occur by chance in a job id or a time
    sent = send_photo_skipping_questions(stack.user, chat, photos_by_risk["alert"].read_bytes())
    stack.user.wait_for_reply(chat, sent["message_id"])
    job = finished_job(stack, sent["photo"][-1]["file_unique_id"])
    file_id = sent["photo"][-1]["file_id"]

    def tasks_of_the_job() -> dict[str, Any] | None:
        tasks = httpx.get(f"{flower_url}/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
        mine = {uuid: task for uuid, task in tasks.items() if str(job.id) in str(task.get("args"))}
        names = {task["name"] for task in mine.values()}
        # finalize_result too, when it went through the broker (it runs in process when the answers came first)
        wanted = {"worker.tasks.classify_photo", "worker.tasks.notify_clinicians"}
        return mine if wanted <= names else None

    tasks = wait_until(tasks_of_the_job, 60, interval_s=1, what="Flower to list the job's tasks")
    for task_id in tasks:  # the list and each task's own page
        detail = httpx.get(f"{flower_url}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10)
        assert detail.status_code == 200
        shown = json.dumps(tasks[task_id]) + detail.text
        assert str(chat) not in shown and file_id not in shown, shown
        assert tasks[task_id]["args"] == f"(job {job.id})" and tasks[task_id]["kwargs"] == "{}"


def test_chat_over_its_hourly_photo_limit_gets_a_kind_message_and_no_job(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    from bot.rate_limit import PhotoRateLimit

    chat = 1900  # a chat of its own: it stays over the limit for the rest of the module
    consent(stack.user, chat)
    limit = PhotoRateLimit.from_settings(stack.settings())
    assert limit.per_hour == 30, "the default"
    chat_ref = chat_reference(chat, CHAT_HASH_KEY)
    while limit.allow(chat_ref):  # the chat already sent its 30 photos this hour
        pass
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    reply = stack.user.wait_for_reply(chat, sent["message_id"])
    assert reply["text"] == patient_texts.too_many_photos(30)
    with Session(stack.engine) as session:
        assert session.exec(select(Job).where(Job.chat_ref == chat_ref)).all() == [], "not analysed, not stored"
    assert not [
        c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == sent["photo"][-1]["file_id"]
    ]
    again = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    wait_until(lambda: every_update_handled(stack), 30, what="the bot to handle the second photo")
    assert stack.user.replies_to(chat, again["message_id"]) == [], "told once an hour, not once per photo"


def test_photo_that_keeps_killing_workers_is_failed_not_retried_forever(stack: RunningStack) -> None:
    import httpx

    chat = 1500
    status = httpx.post(
        f"{stack.user.api_url}/bot{stack.env['SKINSENSE_TELEGRAM_TOKEN']}/sendMessage",
        json={"chat_id": chat, "text": patient_texts.ANALYSING},
    ).json()["result"]
    delivery = Delivery(chat_id=chat, file_id="never-downloaded", status_message_id=status["message_id"])
    job = Job(
        chat_ref="x" * 32,
        media_kind=MediaKind.PHOTO,
        status=JobStatus.RUNNING,
        delivery_attempts=3,
        delivery=seal(delivery),  # the stack's key: the development default, as in this process
    )
    with Session(stack.engine) as session:
        session.add(job)
        session.commit()
        session.refresh(job)
    enqueue_classification(ClassifyPhotoRequest(job_id=job.id), broker_app(stack))
    wait_until(
        lambda: stack.user.bot_messages(chat)[0]["text"] == patient_texts.ANALYSIS_FAILED, 60, what="the apology"
    )
    with Session(stack.engine) as session:
        failed = session.get(Job, job.id)
    assert failed is not None and (failed.status, failed.error_code) == (JobStatus.FAILED, "worker_lost")
    assert not [c for c in stack.user.calls("getFile") if c["parameters"].get("file_id") == "never-downloaded"]


def test_download_retries_are_not_mistaken_for_lost_workers(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    chat = 1600
    consent(stack.user, chat)
    # Each try meets more 429s than the worker's limiter waits out (10), so the task itself is retried.
    stack.user.inject_fault("getFile", count=11 * MAX_DELIVERY_ATTEMPTS, retry_after=1)
    sent = stack.user.send_photo(chat, photos_by_risk["low"].read_bytes())
    skip_questionnaire(stack.user, chat, sent["message_id"])
    reply = stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=120)
    assert result_texts.RANKING_HEADING in reply["text"], stack.logs()
    job = finished_job(stack, sent["photo"][-1]["file_unique_id"])
    assert job.status == JobStatus.DONE
    assert job.delivery_attempts == MAX_DELIVERY_ATTEMPTS + 1


def every_update_handled(stack: RunningStack) -> bool:
    with Session(stack.engine) as session:
        return all(row.processed_at is not None for row in session.exec(select(InboundUpdate)))
