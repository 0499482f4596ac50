"""The questionnaire's texts and buttons: its two pages, the notes a tap gets, and its closing text."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from shared.answers import BodySite, Sex
from shared.questionnaire import AgeRange, ProfileChoice, Question, YesNo, site_token

# The questionnaire: two pages in one message (bot/questionnaire.py); a tap is acknowledged with a short note.
QUESTIONNAIRE_INTRO = (
    "While I analyse your photo, a few quick questions help me read it better. Tap one answer on each line (a "
    'short note confirms each tap); leave out what you don\'t know, and "Skip" ends the questions.'
)


QUESTIONNAIRE_ABOUT_YOU = "{intro}\n\n<b>Questions 1 of 2: about you</b>\nYour age, your sex, and where the spot is."


QUESTIONNAIRE_ABOUT_YOU_AGAIN = (
    "{intro}\n\n<b>Questions 1 of 2: about you</b>\nLast time you told me: {profile}. Is that still right? "
    "And where is this spot?"
)


QUESTIONNAIRE_ABOUT_THE_SPOT = (
    "{intro}\n\n{noted}<b>Questions 2 of 2: about the spot</b>\nHas it grown recently? Has it changed in shape or "
    "colour? Does it bleed, itch or hurt? Is it raised above the skin? Tap yes or no on each line, then Done."
)


NOTED = "Noted: {answer}"


# The result replaces "Analysing your photo...", just under the questions: the closing texts say so.
QUESTIONNAIRE_DONE = 'Thank you for your answers. Your result appears below, in place of "Analysing your photo".'


QUESTIONNAIRE_DONE_NOTED = (
    'Thank you for your answers ({noted}). Your result appears below, in place of "Analysing your photo".'
)


QUESTIONNAIRE_SKIPPED = (
    'Questions skipped. Your result, from the photo alone, appears below, in place of "Analysing your photo".'
)


# Closed by the worker (worker/flow.py): nobody answered in time, or the photo needed no answers after all.
QUESTIONNAIRE_TIMED_OUT = (
    "These questions closed because there was no answer for a while. Your result below uses the photo and "
    "any answers you had given."
)


QUESTIONNAIRE_NOT_NEEDED = "No questions needed for this photo: my answer is in the message below."


QUESTIONNAIRE_CLOSED = "These questions are closed."


# A press on questionnaire buttons naming another chat's photo (forged callback data): answered, nothing changes.
QUESTIONNAIRE_NOT_YOURS = "These buttons belong to another chat: nothing was changed."


SKIP_BUTTON = "Skip"


NEXT_BUTTON = "Next"


DONE_BUTTON = "Done"


YES_NO_BUTTONS: dict[YesNo, str] = {YesNo.YES: "yes", YesNo.NO: "no"}


# The spot's questions share one keyboard: each line's buttons say which question they answer.
SPOT_QUESTION_WORDS: dict[Question, str] = {
    Question.GREW: "Grown",
    Question.CHANGED: "Changed",
    Question.BLEEDS: "Bleeds",
    Question.ITCHES: "Itches",
    Question.HURTS: "Hurts",
    Question.RAISED: "Raised",
}


SPOT_BUTTONS: dict[Question, tuple[str, str]] = {
    question: (f"{words}: {YES_NO_BUTTONS[YesNo.YES]}", f"{words}: {YES_NO_BUTTONS[YesNo.NO]}")
    for question, words in SPOT_QUESTION_WORDS.items()
}


PROFILE_BUTTONS: dict[ProfileChoice, str] = {ProfileChoice.KEEP: "Yes, still right", ProfileChoice.CHANGE: "Change"}


AGE_BUTTONS: dict[AgeRange, str] = {
    AgeRange.UNDER_20: "under 20",
    AgeRange.TWENTIES: "20-29",
    AgeRange.THIRTIES: "30-39",
    AgeRange.FORTIES: "40-49",
    AgeRange.FIFTIES: "50-59",
    AgeRange.SIXTIES: "60-69",
    AgeRange.SEVENTIES: "70-79",
    AgeRange.EIGHTY_PLUS: "80 or over",
}


SEX_BUTTONS: dict[Sex, str] = {Sex.FEMALE: "Female", Sex.MALE: "Male"}


# In the patient's words (HAM10000's are a clinician's: "acral", "lower extremity", "trunk").
BODY_SITE_BUTTONS: dict[BodySite, str] = {
    BodySite.FACE: "Face",
    BodySite.SCALP: "Scalp",
    BodySite.EAR: "Ear",
    BodySite.NECK: "Neck",
    BodySite.CHEST: "Chest",
    BodySite.ABDOMEN: "Belly",
    BodySite.BACK: "Back",
    BodySite.TRUNK: "Side or hips",
    BodySite.UPPER_EXTREMITY: "Arm",
    BodySite.HAND: "Hand",
    BodySite.LOWER_EXTREMITY: "Leg",
    BodySite.FOOT: "Foot",
    BodySite.ACRAL: "Palm, sole or nail",
    BodySite.GENITAL: "Genitals",
}


def remembered_profile(age_range: AgeRange | None, sex: Sex | None) -> str:
    """ "age 40-49, female" (what the patient told us last time)."""
    parts = []
    if age_range is not None:
        parts.append(f"age {AGE_BUTTONS[age_range]}")
    if sex is not None:
        parts.append(SEX_BUTTONS[sex].lower())
    return ", ".join(parts)


def questionnaire_about_you(profile: str = "") -> str:
    """The first page (Telegram HTML); ``profile``: what the patient told us last time, to confirm."""
    if profile:
        return QUESTIONNAIRE_ABOUT_YOU_AGAIN.format(intro=QUESTIONNAIRE_INTRO, profile=escape(profile))
    return QUESTIONNAIRE_ABOUT_YOU.format(intro=QUESTIONNAIRE_INTRO)


def questionnaire_about_the_spot(noted: str = "") -> str:
    """The second page (Telegram HTML), after what the first page noted."""
    return QUESTIONNAIRE_ABOUT_THE_SPOT.format(
        intro=QUESTIONNAIRE_INTRO, noted=f"{NOTED.format(answer=escape(noted))}.\n\n" if noted else ""
    )


def questionnaire_done(noted: str = "") -> str:
    return QUESTIONNAIRE_DONE_NOTED.format(noted=escape(noted)) if noted else QUESTIONNAIRE_DONE


def answers_noted(
    age_range: AgeRange | None, sex: Sex | None, body_site: BodySite | None, spot: Mapping[Question, bool]
) -> str:
    """ "age 40-49, female, on the back; grown: yes, bleeds: no": what the patient told us, in their words."""
    about_you = remembered_profile(age_range, sex)
    if body_site is not None:
        where = f"on the {BODY_SITE_BUTTONS[body_site].lower()}"
        about_you = f"{about_you}, {where}" if about_you else where
    about_spot = ", ".join(SPOT_BUTTONS[question][0 if value else 1].lower() for question, value in spot.items())
    return "; ".join(part for part in (about_you, about_spot) if part)


def noted_toast(question: Question, value: str) -> str:
    """The short note a tap gets ("Noted: age 40-49"): the answer, as the patient chose it."""
    if question == Question.CONFIRM_PROFILE:
        answer = "still right" if ProfileChoice(value) == ProfileChoice.KEEP else "let's change it"
    elif question == Question.AGE:
        answer = f"age {AGE_BUTTONS[AgeRange(value)]}"
    elif question == Question.SEX:
        answer = next(label for sex, label in SEX_BUTTONS.items() if sex.value == value).lower()
    elif question == Question.BODY_SITE:
        answer = next(label for site, label in BODY_SITE_BUTTONS.items() if site_token(site) == value).lower()
    else:
        answer = SPOT_BUTTONS[question][0 if YesNo(value) == YesNo.YES else 1].lower()
    return NOTED.format(answer=answer)
