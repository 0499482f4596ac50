"""What a patient can tell that a photo cannot show: the questionnaire's answers, one shape for the bot
(which asks), the worker (which combines them with the photo) and ``skinsense classify --answers``.

Every answer may be unknown (None): the patient skipped it, pressed "Don't know", or was never asked.
All answers unknown must give exactly the photo-only result (models/serving/triage.py).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"


class BodySite(StrEnum):
    """HAM10000's localization words."""

    ABDOMEN = "abdomen"
    ACRAL = "acral"
    BACK = "back"
    CHEST = "chest"
    EAR = "ear"
    FACE = "face"
    FOOT = "foot"
    GENITAL = "genital"
    HAND = "hand"
    LOWER_EXTREMITY = "lower extremity"
    NECK = "neck"
    SCALP = "scalp"
    TRUNK = "trunk"
    UPPER_EXTREMITY = "upper extremity"


# The yes / no / don't know questions about the spot, in the order they are asked.
LESION_QUESTIONS: tuple[str, ...] = ("grew", "changed", "bleeds", "itches", "hurts", "raised")


class PatientAnswers(BaseModel):
    """One photo's answers. Age and sex belong to the patient (remembered for the next photo); the rest
    belong to this spot."""

    model_config = ConfigDict(frozen=True)

    age: int | None = None  # years
    sex: Sex | None = None
    body_site: BodySite | None = None
    grew: bool | None = None
    changed: bool | None = None  # in shape or colour
    bleeds: bool | None = None
    itches: bool | None = None
    hurts: bool | None = None
    raised: bool | None = None

    def known(self) -> list[str]:
        """The names of the answers given, in a fixed order (for ``answers_used`` and the audit)."""
        return [name for name, value in self.model_dump().items() if value is not None]


class AnswerEffect(StrEnum):
    """Which way one answer moved this photo's result (models/serving/decision.py)."""

    RAISED = "raised"
    LOWERED = "lowered"
