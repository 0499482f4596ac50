"""Consent, remembered age and sex, /delete's erasure and the questionnaire's answers on the job row, on a
migrated SQLite database; the questionnaire's steps as the bot walks them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.patients import PatientStore
from bot.state import Questionnaire
from shared.answers import BodySite, PatientAnswers, Sex
from shared.audit import Consent, Job, JobStatus, MediaKind, PatientProfile
from shared.job_store import IllegalTransition, JobStore
from shared.outcomes import FailureCode
from shared.questionnaire import YES_NO_QUESTIONS, AgeRange, ProfileChoice, Question, YesNo, site_token
from shared.retention import PURGED_CHAT_REF

CHAT = "c" * 32


@pytest.fixture
def stores(audit_engine: Engine) -> tuple[PatientStore, JobStore]:
    return PatientStore(audit_engine), JobStore(audit_engine)


def test_consent_is_per_text_version_and_recorded_once(stores: tuple[PatientStore, JobStore]) -> None:
    patients, _ = stores
    assert patients.consent(CHAT, "v1") is None
    first = patients.record_consent(CHAT, "v1")
    assert patients.record_consent(CHAT, "v1").id == first.id
    assert patients.consent(CHAT, "v1") is not None and first.decided_at is not None
    assert patients.consent(CHAT, "v2") is None, "a new text version asks again"
    patients.withdraw_consent(CHAT)
    assert patients.consent(CHAT, "v1") is None


def test_delete_erases_jobs_answers_profile_and_consent_of_that_patient_only(
    stores: tuple[PatientStore, JobStore],
) -> None:
    patients, jobs = stores
    other = "d" * 32
    for chat_ref in (CHAT, other):
        patients.record_consent(chat_ref, "v1")
        patients.remember_profile(chat_ref, AgeRange.FORTIES, Sex.FEMALE)
        job = jobs.record_received(chat_ref=chat_ref, media_kind=MediaKind.PHOTO, file_unique_id="u")
        jobs.record_answers(job.id, PatientAnswers(age=45, bleeds=True), close=True)
    assert patients.erase_patient(CHAT) == 1
    with Session(jobs._engine) as session:
        assert sorted(job.chat_ref for job in session.exec(select(Job)).all()) == sorted([other, PURGED_CHAT_REF])
        tombstone = session.exec(select(Job).where(Job.chat_ref == PURGED_CHAT_REF)).one()
        assert tombstone.answers is None and tombstone.telegram_file_unique_id is None, "nothing links it back"
        assert (tombstone.status, tombstone.error_code) == (JobStatus.FAILED, FailureCode.ERASED), "in progress"
        assert tombstone.replied_at is not None, "nothing answers it any more"
        assert [consent.chat_ref for consent in session.exec(select(Consent)).all()] == [other]
        assert [profile.chat_ref for profile in session.exec(select(PatientProfile)).all()] == [other]
    late = jobs.record_answers(tombstone.id, PatientAnswers(age=45), close=True)
    assert late.answers is None, "a questionnaire still open cannot write answers back into a tombstone"
    with pytest.raises(IllegalTransition):
        jobs.mark_running(tombstone.id)  # a task still on the broker cannot analyse it into the tombstone


def test_answers_after_the_questionnaire_closed_change_nothing(stores: tuple[PatientStore, JobStore]) -> None:
    patients, jobs = stores
    patients.record_consent(CHAT, "v1")
    job = jobs.record_received(chat_ref=CHAT, media_kind=MediaKind.PHOTO, file_unique_id="u")
    jobs.record_answers(job.id, PatientAnswers(age=45), close=False)
    closed = jobs.close_answers(job.id)  # the worker's timeout
    assert closed.answers_closed_at is not None and closed.answers == PatientAnswers(age=45).model_dump(mode="json")
    late = jobs.record_answers(job.id, PatientAnswers(age=45, bleeds=True), close=True)
    assert late.answers == PatientAnswers(age=45).model_dump(mode="json")
    assert late.answers_closed_at == closed.answers_closed_at


def _questionnaire(**remembered: object) -> Questionnaire:
    confirming = bool(remembered)
    return Questionnaire(uuid.uuid4(), 1, CHAT, confirming_profile=confirming, **remembered)  # type: ignore[arg-type]


def test_every_answer_lands_in_the_patient_answers() -> None:
    questionnaire = _questionnaire()
    assert questionnaire.page_questions == (Question.AGE, Question.SEX, Question.BODY_SITE)
    for question, value in [
        (Question.AGE, AgeRange.SIXTIES.value),
        (Question.SEX, Sex.FEMALE.value),
        (Question.SEX, Sex.MALE.value),  # a second tap on a line replaces the first
        (Question.BODY_SITE, site_token(BodySite.LOWER_EXTREMITY)),
    ]:
        questionnaire.record(question, value)
    assert questionnaire.page_answered and not questionnaire.on_last_page
    questionnaire.next_page()
    assert questionnaire.page_questions == YES_NO_QUESTIONS
    taps = {"grew": YesNo.YES, "changed": YesNo.NO, "bleeds": YesNo.YES, "hurts": YesNo.NO, "raised": YesNo.YES}
    for name, value in taps.items():  # itches left out: unknown
        questionnaire.record(Question(name), value.value)
    assert not questionnaire.page_answered
    assert questionnaire.answers() == PatientAnswers(
        age=65,
        sex=Sex.MALE,
        body_site=BodySite.LOWER_EXTREMITY,
        grew=True,
        changed=False,
        bleeds=True,
        itches=None,
        hurts=False,
        raised=True,
    )


def test_questions_left_out_give_no_answers() -> None:
    questionnaire = _questionnaire()
    questionnaire.next_page()
    assert questionnaire.answers() == PatientAnswers() and questionnaire.answers().known() == []


def test_remembered_age_and_sex_are_kept_or_asked_again() -> None:
    kept = _questionnaire(remembered_age=AgeRange.FORTIES)
    assert kept.page_questions == (Question.CONFIRM_PROFILE, Question.BODY_SITE)
    kept.record(Question.CONFIRM_PROFILE, ProfileChoice.KEEP.value)
    assert kept.answers().age == 45 and not kept.asked_profile and not kept.page_answered
    changed = _questionnaire(remembered_sex=Sex.FEMALE)
    changed.record(Question.CONFIRM_PROFILE, ProfileChoice.CHANGE.value)
    assert changed.page_questions == (Question.AGE, Question.SEX, Question.BODY_SITE)
    changed.record(Question.AGE, AgeRange.TWENTIES.value)
    changed.record(Question.SEX, Sex.MALE.value)
    assert changed.answers().sex == Sex.MALE and changed.asked_profile


def test_every_button_fits_telegrams_callback_data_limit_and_says_which_question_it_answers() -> None:
    from bot.questionnaire import keyboard

    for questionnaire in (_questionnaire(), _questionnaire(remembered_age=AgeRange.FORTIES)):
        for _ in range(2):
            labels = [button.text for row in keyboard(questionnaire).inline_keyboard for button in row]
            assert len(labels) == len(set(labels)), "each label names one answer to one question"
            for row in keyboard(questionnaire).inline_keyboard:
                for button in row:
                    assert button.callback_data is not None and len(str(button.callback_data).encode()) <= 64
            questionnaire.next_page()


def test_every_question_and_answer_has_its_patient_text() -> None:
    from shared.texts import patient as patient_texts
    from shared.texts import questionnaire as questionnaire_texts

    assert set(questionnaire_texts.SPOT_BUTTONS) == set(YES_NO_QUESTIONS)
    assert set(questionnaire_texts.AGE_BUTTONS) == set(AgeRange) and set(questionnaire_texts.SEX_BUTTONS) == set(Sex)
    assert set(questionnaire_texts.BODY_SITE_BUTTONS) == set(BodySite) and set(
        questionnaire_texts.YES_NO_BUTTONS
    ) == set(YesNo)
    assert set(questionnaire_texts.PROFILE_BUTTONS) == set(ProfileChoice)
    assert patient_texts.PRIVACY_VERSION in patient_texts.PRIVACY, "the patient sees which version they agree to"
    assert questionnaire_texts.noted_toast(Question.AGE, AgeRange.FORTIES.value) == "Noted: age 40-49"
    assert questionnaire_texts.noted_toast(Question.BLEEDS, YesNo.NO.value) == "Noted: bleeds: no"
    assert (
        questionnaire_texts.answers_noted(AgeRange.FORTIES, Sex.FEMALE, BodySite.BACK, {Question.GREW: True})
        == "age 40-49, female, on the back; grown: yes"
    )


def test_every_answer_has_its_name_in_the_result() -> None:
    from shared.texts import result as result_texts

    assert set(result_texts.ANSWER_NAMES) == set(PatientAnswers.model_fields)


def test_clinicians_read_the_answers_the_patient_gave() -> None:
    from shared.texts import clinician as clinician_texts
    from tests.worker.test_clinician_alerts import alert_view

    ranking = [
        {"code": "mel", "name": "Melanoma", "probability": 0.6},
        {"code": "nv", "name": "Nevus", "probability": 0.4},
    ]
    text = clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers(age=45, bleeds=True)))
    assert "Patient's answers: age: 40-49, bleeding: yes" in text  # the range the patient chose
    assert "Patient's answers: none given" in clinician_texts.clinician_alert(alert_view(ranking, PatientAnswers()))


def test_nothing_about_a_patient_is_written_after_no_thanks_even_by_a_process_that_missed_it(
    stores: tuple[PatientStore, JobStore],
) -> None:
    """Issue 23: a questionnaire finished on a bot process that did not see the withdrawal wrote the answers and
    the remembered age and sex back. The stores themselves refuse: no consent, no write (the close still counts,
    so the result is not held up)."""
    patients, jobs = stores
    patients.record_consent(CHAT, "v1")
    job = jobs.record_received(chat_ref=CHAT, media_kind=MediaKind.PHOTO, file_unique_id="u")
    patients.withdraw_consent(CHAT)
    closed = jobs.record_answers(job.id, PatientAnswers(age=45, sex=Sex.MALE, bleeds=True), close=True)
    assert closed.answers is None and closed.answers_closed_at is not None
    assert patients.remember_profile(CHAT, AgeRange.FORTIES, Sex.MALE) is False
    assert patients.profile(CHAT) is None
    patients.record_consent(CHAT, "v1")  # agreeing again: remembered from then on
    assert patients.remember_profile(CHAT, AgeRange.FORTIES, Sex.MALE) is True
