"""Two bot processes on the real stack (sandbox, redis-server, a Celery worker, SQLite): one leads and polls,
the other is a standby that reports not ready. The leader killed (SIGKILL), the standby takes over within a
lease (bot/leadership.py): every message, before and after, is answered exactly once; a questionnaire half
answered on the old leader is finished on the new one, its answers all in the result; and a photo sent before
consent on the old leader is analysed when the patient agrees on the new one, without sending it again."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from shared.answers import PatientAnswers
from shared.audit import Job
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts import result as result_texts
from tests.auxil.patient import (
    EVERY_ANSWER,
    EVERY_ANSWER_TAPS,
    answer_questionnaire,
    consent,
    every_answer_closing_text,
    skip_questionnaire,
)
from tests.auxil.services import ChildProcess, free_port, python_command, wait_until
from tests.auxil.stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

LEASE_S = 3.0
BEFORE, AFTER, HALFWAY, UNDECIDED = 4_101, 4_102, 4_103, 4_104


def readiness(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
    except httpx.HTTPError:
        return None


@contextlib.contextmanager
def two_bots(redis_url: str, tmp_path: Path) -> Iterator[tuple[RunningStack, ChildProcess, int]]:
    """The stack with its bot as replica a (the leader), and replica b started after it (a standby); yields the
    stack, the standby and the standby's metrics port."""
    database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    with running_stack(
        redis_url,
        database_url,
        tmp_path,
        questionnaire_timeout_s=120,
        bot_replica_id="replica-a",
        bot_leader_lease_s=LEASE_S,
    ) as stack:
        port = free_port()
        env = {**stack.env, "SKINSENSE_BOT_REPLICA_ID": "replica-b", "SKINSENSE_BOT_METRICS_PORT": str(port)}
        standby = ChildProcess("standby-bot", python_command("-m", "skinsense.cli", "bot"), env, tmp_path)
        try:
            wait_until(lambda: "replica-b is a standby" in standby.output(), 60, what="the second bot as a standby")
            yield stack, standby, port
        finally:
            standby.stop()


def test_the_standby_bot_takes_over_from_a_killed_leader_and_every_message_is_answered_once(
    redis_url: str, tmp_path: Path
) -> None:
    with two_bots(redis_url, tmp_path) as (stack, standby, port):
        not_ready = wait_until(lambda: readiness(port), 30, what="the standby's health endpoint")
        assert not_ready.status_code == 503 and "standby" in not_ready.text, "a standby is not ready"
        stack.user.send_text(BEFORE, "/start")
        wait_until(lambda: stack.user.bot_messages(BEFORE), 60, what="the leader's answer")

        stack.bot.stop(signal.SIGKILL)
        stack.user.send_text(AFTER, "/start")
        wait_until(lambda: stack.user.bot_messages(AFTER), 60, what="the standby's answer, once it leads")
        assert "replica-b leads" in standby.output(), standby.output()[-3000:]
        ready = readiness(port)
        assert ready is not None and ready.status_code == 200, "the new leader reports ready"

        time.sleep(2 * LEASE_S)  # a second answer, from either process, would show by now
        assert len(stack.user.bot_messages(BEFORE)) == 1, stack.logs()
        assert len(stack.user.bot_messages(AFTER)) == 1, standby.output()[-3000:]


def test_a_questionnaire_half_answered_on_the_old_leader_is_finished_on_the_new_one(
    redis_url: str, tmp_path: Path, phone_photo: Path
) -> None:
    with two_bots(redis_url, tmp_path) as (stack, standby, _):
        consent(stack.user, HALFWAY)
        sent = stack.user.send_photo(HALFWAY, phone_photo.read_bytes())
        answer_questionnaire(stack.user, HALFWAY, sent["message_id"], EVERY_ANSWER_TAPS[:2])  # age and sex

        stack.bot.stop(signal.SIGKILL)
        wait_until(lambda: "replica-b leads" in standby.output(), 60, what="the standby to lead")
        # Every answer tapped again from the start (age and sex were saved: tapping them again changes nothing).
        questions = answer_questionnaire(stack.user, HALFWAY, sent["message_id"], EVERY_ANSWER_TAPS)
        assert questions["text"] == every_answer_closing_text(), questions
        assert questionnaire_texts.QUESTIONNAIRE_CLOSED not in [
            m.get("text") for m in stack.user.bot_messages(HALFWAY)
        ], "the failover closed no questionnaire"
        stack.user.wait_for_reply(HALFWAY, sent["message_id"], timeout_s=90)
        assert "taken up again from its row" in standby.output(), standby.output()[-3000:]
        with Session(stack.engine) as session:
            job = session.exec(select(Job)).one()
        assert PatientAnswers.model_validate(job.answers) == EVERY_ANSWER, "every answer is in the result"
        assert set(job.answers_used or ()) == set(EVERY_ANSWER.known())


def test_a_photo_sent_before_consent_is_analysed_when_the_patient_agrees_on_the_new_leader(
    redis_url: str, tmp_path: Path, photos_by_risk: dict[str, Path]
) -> None:
    with two_bots(redis_url, tmp_path) as (stack, standby, _):
        sent = stack.user.send_photo(UNDECIDED, photos_by_risk["low"].read_bytes())
        prompt = stack.user.wait_for_button(UNDECIDED, patient_texts.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])

        stack.bot.stop(signal.SIGKILL)
        wait_until(lambda: "replica-b leads" in standby.output(), 60, what="the standby to lead")
        stack.user.tap(UNDECIDED, prompt["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
        stack.user.wait_for_text(UNDECIDED, prompt["message_id"], patient_texts.CONSENT_GIVEN_PHOTO_PENDING)
        skip_questionnaire(stack.user, UNDECIDED, sent["message_id"])
        reply = stack.user.wait_for_reply(UNDECIDED, sent["message_id"], timeout_s=90)
        assert result_texts.RANKING_HEADING in reply["text"], standby.output()[-3000:]
