"""The same spot over time, end to end on real parts (sandbox, redis-server, a Celery worker and beat, the bot):
a patient asks to be reminded under a LOW result, the reminder arrives when due (its time moved forward in the
database, not waited for), the new photo sent in reply to it is compared with the earlier one and the result
says what changed, raising the risk; /history groups the two photos; /reminders lists and stops reminders;
/delete erases the reminders and the link between the photos."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlmodel import Session, col, select, update

from models.serving.decision import RAISED_BY_CHANGE
from models.serving.inference import Classifier
from models.serving.preprocessing import prepare_image
from shared.audit import Job, SpotFollowup, utc_now
from shared.labels import RiskLevel
from shared.texts import patient as patient_texts
from skinsense.sandbox import plain_text
from tests.auxil.patient import erase_everything, send_photo_skipping_questions, skip_questionnaire
from tests.auxil.services import python_command, wait_until
from tests.auxil.spot_changes import darkened_spot, png
from tests.auxil.stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

PATIENT, OTHER = 5_201, 5_202


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("spots-stack")
    with running_stack(
        redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, beat=True, reminder_sweep_interval_s=1
    ) as running:
        yield running


def answered_job(stack: RunningStack, chat: int, sent: dict[str, Any]) -> Job:
    stack.user.wait_for_reply(chat, sent["message_id"], timeout_s=90)

    def job() -> Job | None:
        with Session(stack.engine) as session:
            unique_id = sent["photo"][-1]["file_unique_id"]
            found = session.exec(select(Job).where(Job.telegram_file_unique_id == unique_id)).first()
            return found if found is not None and found.replied_at is not None else None

    return wait_until(job, 60, what="the job answered")


def bot_texts(stack: RunningStack, chat: int) -> list[str]:
    return [str(m.get("text", "")) for m in stack.user.bot_messages(chat)]


def command_answer(stack: RunningStack, chat: int, command: str) -> dict[str, Any]:
    """The bot's first message after ``command`` (these commands answer without quoting it)."""
    sent = stack.user.send_text(chat, command)
    return wait_until(
        lambda: next((m for m in stack.user.bot_messages(chat) if m["message_id"] > sent["message_id"]), None),
        30,
        what=f"the answer to {command}",
    )


def test_a_reminder_brings_a_new_photo_that_is_compared_and_a_change_raises_the_risk(
    stack: RunningStack, photos_by_risk: dict[str, Path], classifier: Classifier
) -> None:
    with Image.open(photos_by_risk["low"]) as image:
        prepared = prepare_image(image)
    first = send_photo_skipping_questions(stack.user, PATIENT, png(prepared))
    earlier = answered_job(stack, PATIENT, first)
    assert earlier.risk == RiskLevel.LOW
    result = stack.user.wait_for_reply(PATIENT, first["message_id"])
    query = stack.user.tap(PATIENT, result["message_id"], patient_texts.REMINDER_BUTTON)
    stack.user.wait_for_answer(query)
    wait_until(lambda: any(t.startswith("I will remind you on") for t in bot_texts(stack, PATIENT)), 30, what="set")
    with Session(stack.engine) as session:
        (followup,) = session.exec(select(SpotFollowup)).all()
    assert followup.job_id == earlier.id
    assert timedelta(days=89) < followup.remind_at - utc_now() <= timedelta(days=90), "about 3 months after LOW"
    assert str(PATIENT) not in followup.sealed, "the contact is sealed"

    # Three months pass (in the database): beat's sweep sends the reminder once.
    with Session(stack.engine) as session:
        session.exec(update(SpotFollowup).values(remind_at=utc_now() - timedelta(seconds=1)))
        session.commit()
    reminder = wait_until(
        lambda: next((m for m in stack.user.bot_messages(PATIENT) if "Time to photograph" in m.get("text", "")), None),
        60,
        what="the reminder",
    )
    reply = stack.user.send_photo(PATIENT, png(darkened_spot(prepared, 25.0)), reply_to=str(reminder["message_id"]))
    skip_questionnaire(stack.user, PATIENT, reply["message_id"])
    later = answered_job(stack, PATIENT, reply)
    assert later.same_spot_as == earlier.id
    assert later.spot_change is not None and later.spot_change["comparable"], later.spot_change
    assert "darker" in later.spot_change["changes"]
    assert later.photo_ranking is not None and later.photo_kind is not None
    photo_only = classifier.prediction_from_ranking(later.photo_ranking, later.photo_kind, None).risk
    assert later.risk == RAISED_BY_CHANGE[photo_only], "the change raised the risk one level (HIGH stays HIGH)"
    assert later.spot_change["raised_risk"] == (photo_only != RiskLevel.HIGH)
    text = stack.user.wait_for_reply(PATIENT, reply["message_id"])["text"]
    assert "Compared with your earlier photo" in text and "Since then it looks darker" in text, text
    assert ("raised the risk by one level" in text) == later.spot_change["raised_risk"]
    assert len([t for t in bot_texts(stack, PATIENT) if "Time to photograph" in t]) == 1, "one reminder"

    report = subprocess.run(
        python_command("-m", "skinsense.cli", "audit", "performance"),
        env={**stack.env, "SKINSENSE_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Reminders to photograph a spot again: 1 asked for, 1 sent; new photos sent in reply: 1" in report, report
    assert "compared: a change 1 (darker 1), no clear change 0; not comparable 0" in report, report
    history = command_answer(stack, PATIENT, "/history")
    assert plain_text("<b>The same spot, 2 photos</b>", "HTML") in history["text"], history["text"]

    erase_everything(stack.user, PATIENT, jobs=2)
    with Session(stack.engine) as session:
        assert session.exec(select(SpotFollowup)).all() == []
        rows = session.exec(select(Job).where(col(Job.id).in_([earlier.id, later.id]))).all()
    assert all(row.same_spot_as is None and row.spot_change is None for row in rows), "the link is erased"


def test_reminders_lists_them_and_stops_them_all_and_a_caption_ties_a_photo_to_a_result_of_history(
    stack: RunningStack, photos_by_risk: dict[str, Path]
) -> None:
    sent = send_photo_skipping_questions(stack.user, OTHER, photos_by_risk["low"].read_bytes())
    answered_job(stack, OTHER, sent)
    result = stack.user.wait_for_reply(OTHER, sent["message_id"])
    stack.user.wait_for_answer(stack.user.tap(OTHER, result["message_id"], patient_texts.REMINDER_BUTTON))
    wait_until(lambda: any(t.startswith("I will remind you on") for t in bot_texts(stack, OTHER)), 30, what="set")
    listing = command_answer(stack, OTHER, "/reminders")
    assert listing["text"].startswith(patient_texts.REMINDERS_HEADING) and "due on" in listing["text"]
    stack.user.wait_for_answer(stack.user.tap(OTHER, listing["message_id"], patient_texts.REMINDERS_STOP_ALL_BUTTON))
    wait_until(lambda: patient_texts.REMINDERS_ALL_STOPPED in bot_texts(stack, OTHER), 30, what="stopped")
    again = command_answer(stack, OTHER, "/reminders")
    assert again["text"] == plain_text(patient_texts.REMINDERS_NONE, "HTML")
    with Session(stack.engine) as session:
        (followup,) = session.exec(select(SpotFollowup)).all()
    assert followup.stopped_at is not None

    # "same as 1": a new photo of result 1 of /history, without a reminder. The earlier photo is not kept, so
    # only the analyses can be compared; /history shows the two together.
    with Image.open(photos_by_risk["low"]) as image:
        retaken = io.BytesIO()
        image.convert("RGB").save(retaken, "JPEG", quality=85)
    new = stack.user.send_photo(OTHER, retaken.getvalue(), caption="Same as 1")
    skip_questionnaire(stack.user, OTHER, new["message_id"])
    later = answered_job(stack, OTHER, new)
    assert later.same_spot_as == followup.job_id
    assert later.spot_change is not None and later.spot_change["reason"] == "the earlier photo is not kept"
    text = stack.user.wait_for_reply(OTHER, new["message_id"])["text"]
    assert "I could not compare the two photos (the earlier photo is not kept)" in text, text
    assert plain_text("<b>The same spot, 2 photos</b>", "HTML") in command_answer(stack, OTHER, "/history")["text"]
