"""The questionnaire's domain: which questions, in which order, and the answers each button stands for.

The bot asks (bot/questionnaire.py), the job row stores the answers (``jobs.answers``), the worker combines
them with the photo (``Classifier.prediction_from_ranking``). Any question can be left out (its answer stays
unknown) and the whole questionnaire can be skipped; unknown answers change nothing.
"""

from __future__ import annotations

from enum import StrEnum

from shared.answers import LESION_QUESTIONS, BodySite, PatientAnswers, Sex


class Question(StrEnum):
    CONFIRM_PROFILE = "profile"  # "last time you told us ...: still right?" (only when age or sex is remembered)
    AGE = "age"
    SEX = "sex"
    BODY_SITE = "site"
    GREW = "grew"
    CHANGED = "changed"
    BLEEDS = "bleeds"
    ITCHES = "itches"
    HURTS = "hurts"
    RAISED = "raised"


YES_NO_QUESTIONS: tuple[Question, ...] = tuple(Question(name) for name in LESION_QUESTIONS)
PATIENT_QUESTIONS: tuple[Question, ...] = (Question.AGE, Question.SEX)  # remembered for the next photo


class AgeRange(StrEnum):
    """The age buttons; the model gets a representative age in years (the range's middle)."""

    UNDER_20 = "u20"
    TWENTIES = "20s"
    THIRTIES = "30s"
    FORTIES = "40s"
    FIFTIES = "50s"
    SIXTIES = "60s"
    SEVENTIES = "70s"
    EIGHTY_PLUS = "80p"

    @property
    def representative_age(self) -> int:
        return REPRESENTATIVE_AGE[self]


REPRESENTATIVE_AGE: dict[AgeRange, int] = {
    AgeRange.UNDER_20: 15,
    AgeRange.TWENTIES: 25,
    AgeRange.THIRTIES: 35,
    AgeRange.FORTIES: 45,
    AgeRange.FIFTIES: 55,
    AgeRange.SIXTIES: 65,
    AgeRange.SEVENTIES: 75,
    AgeRange.EIGHTY_PLUS: 85,
}


def age_range_of(years: int) -> AgeRange:
    """The range an age falls in: what the patient chose, from the representative age stored on the job (an age
    given otherwise, e.g. ``skinsense classify --answers``, falls in its decade)."""
    if years < 20:
        return AgeRange.UNDER_20
    if years >= 80:
        return AgeRange.EIGHTY_PLUS
    return list(AgeRange)[years // 10 - 1]


class ProfileChoice(StrEnum):
    KEEP = "keep"
    CHANGE = "change"


class YesNo(StrEnum):
    YES = "yes"
    NO = "no"


def site_token(site: BodySite) -> str:
    """A body site as a callback-data token (no spaces)."""
    return site.name.lower()


def site_from_token(token: str) -> BodySite:
    return BodySite[token.upper()]


def sex_from_token(token: str) -> Sex:
    return Sex(token)


def answers_from_record(record: dict[str, object] | None) -> PatientAnswers:
    """The answers stored on a job row (None or {} when none were given)."""
    return PatientAnswers.model_validate(record or {})
