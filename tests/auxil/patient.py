"""A patient's side of the conversation, played through the sandbox: consent, then photos and the questionnaire."""

from __future__ import annotations

from typing import Any

from shared.answers import BodySite, PatientAnswers, Sex
from shared.questionnaire import AgeRange, ProfileChoice, YesNo
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from skinsense.sandbox import plain_text
from tests.auxil.sandbox_user import SandboxUser, button_data
from tests.auxil.services import wait_until

CONSENTED_TEXTS = (patient_texts.CONSENT_GIVEN, patient_texts.CONSENT_GIVEN_PHOTO_PENDING)
# Every question answered (answer_questionnaire's labels), and what the job row then holds.
EVERY_ANSWER_TAPS = ["40-49", "Female", "Back", "Yes", "Yes", "Yes", "No", "No", "Yes"]
EVERY_ANSWER = PatientAnswers(
    age=45,
    sex=Sex.FEMALE,
    body_site=BodySite.BACK,
    grew=True,
    changed=True,
    bleeds=True,
    itches=False,
    hurts=False,
    raised=True,
)


def every_answer_closing_text() -> str:
    """The questionnaire as it reads once EVERY_ANSWER_TAPS were tapped (plain text, as the sandbox shows it)."""
    noted = questionnaire_texts.answers_noted(
        AgeRange.FORTIES,
        Sex.FEMALE,
        BodySite.BACK,
        {question: bool(getattr(EVERY_ANSWER, question.value)) for question in questionnaire_texts.SPOT_BUTTONS},
    )
    return plain_text(questionnaire_texts.questionnaire_done(noted), "HTML")


def consent(user: SandboxUser, chat_id: int) -> None:
    """Agree to the privacy text (once per chat: nothing happens if this chat already agreed)."""
    if any(m.get("text") in CONSENTED_TEXTS for m in user.bot_messages(chat_id)):
        return
    sent = user.send_text(chat_id, "/start")
    prompt = user.wait_for_button(chat_id, patient_texts.CONSENT_AGREE_BUTTON, after_id=sent["message_id"])
    user.tap(chat_id, prompt["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
    user.wait_for_text(chat_id, prompt["message_id"], patient_texts.CONSENT_GIVEN)


def questionnaire_for(user: SandboxUser, chat_id: int, photo_message_id: int) -> dict[str, Any]:
    """The questionnaire the bot sends about a photo: the message with a "Skip" button that replies to it."""

    def find() -> dict[str, Any] | None:
        for message in user.bot_messages(chat_id):
            replies_to = message.get("reply_to_message", {}).get("message_id")
            if replies_to == photo_message_id and button_data(message, questionnaire_texts.SKIP_BUTTON) is not None:
                return message
        return None

    return wait_until(find, 60, what=f"the questionnaire about photo {photo_message_id} in chat {chat_id}")


def skip_questionnaire(user: SandboxUser, chat_id: int, photo_message_id: int) -> None:
    questions = questionnaire_for(user, chat_id, photo_message_id)
    user.tap(chat_id, questions["message_id"], questionnaire_texts.SKIP_BUTTON)
    user.wait_for_text(chat_id, questions["message_id"], plain_text(questionnaire_texts.QUESTIONNAIRE_SKIPPED, "HTML"))


def send_photo_skipping_questions(user: SandboxUser, chat_id: int, data: bytes, **query: str) -> dict[str, Any]:
    """What most tests need: consent (once), send the photo, skip its questionnaire; returns the photo message."""
    consent(user, chat_id)
    sent = user.send_photo(chat_id, data, **query)
    skip_questionnaire(user, chat_id, sent["message_id"])
    return sent


DONT_KNOW = "Don't know"  # in answer_questionnaire's list: the question is left out (it stays unknown)


def answer_questionnaire(user: SandboxUser, chat_id: int, photo_message_id: int, labels: list[str]) -> dict[str, Any]:
    """One entry per question, in the order the two pages ask them: age, sex and where (or "Yes, still right" /
    "Change", then where), then "Yes" / "No" for grown, changed, bleeds, itches, hurts, raised; ``DONT_KNOW``
    leaves a question out. Each tap waits for the bot's answer; a page whose questions the list covers, with some
    left out, is moved on with "Next" / "Done". Returns the questionnaire message as it reads afterwards."""
    questions = questionnaire_for(user, chat_id, photo_message_id)
    message_id = questions["message_id"]

    def tap(label: str) -> None:
        user.wait_for_answer(user.tap(chat_id, message_id, label))

    def now() -> dict[str, Any]:
        return next(m for m in user.bot_messages(chat_id) if m["message_id"] == message_id)

    confirming = button_data(questions, questionnaire_texts.PROFILE_BUTTONS[ProfileChoice.KEEP]) is not None
    first_page = ["profile", "site"] if confirming else ["age", "sex", "site"]
    pending = list(labels)
    asked = 0
    while asked < len(first_page) and pending:
        label = pending.pop(0)
        if first_page[asked] == "profile" and label == questionnaire_texts.PROFILE_BUTTONS[ProfileChoice.CHANGE]:
            first_page = ["profile", "age", "sex", "site"]
        if label != DONT_KNOW:
            tap(label)
        asked += 1
    if asked < len(first_page):
        return now()
    if DONT_KNOW in labels[: len(first_page)]:
        tap(questionnaire_texts.NEXT_BUTTON)
    spot_labels = pending[: len(questionnaire_texts.SPOT_BUTTONS)]
    for question, label in zip(questionnaire_texts.SPOT_BUTTONS, spot_labels, strict=False):
        if label != DONT_KNOW:
            yes, no = questionnaire_texts.SPOT_BUTTONS[question]
            tap(yes if label == questionnaire_texts.YES_NO_BUTTONS[YesNo.YES].capitalize() else no)
    if len(spot_labels) < len(questionnaire_texts.SPOT_BUTTONS):
        return now()
    if DONT_KNOW in spot_labels:
        tap(questionnaire_texts.DONE_BUTTON)
    return wait_until(lambda: None if now().get("reply_markup") else now(), 30, what="the questionnaire to close")


def erase_everything(user: SandboxUser, chat_id: int, jobs: int) -> None:
    """/delete, then "Erase everything"; waits for the confirmation that ``jobs`` analyses were erased."""
    command = user.send_text(chat_id, "/delete")
    question = user.wait_for_button(chat_id, patient_texts.DELETE_CONFIRM_BUTTON, after_id=command["message_id"])
    user.tap(chat_id, question["message_id"], patient_texts.DELETE_CONFIRM_BUTTON)
    user.wait_for_text(chat_id, question["message_id"], patient_texts.DELETED.format(jobs=jobs))
