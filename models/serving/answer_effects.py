"""Which of the patient's answers raised or lowered the risk of one result, so that the patient reads why.

An answer's effect is measured by leaving it out: the result's malignant probability (melanoma, basal cell
carcinoma, actinic keratosis: models/serving/policy.py) with every answer, minus the same without that one answer.
Effects under MIN_EFFECT are not reported (the answer changed almost nothing). The clinical floors of the
policy (answer patterns that are never LOW risk) count as raising the risk for the answers that make them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.serving.inference import Classifier
from models.serving.policy import MALIGNANT_MASK, assess_risk, never_low
from shared.answers import AnswerEffect, PatientAnswers
from shared.labels import CLASS_CODES, PhotoKind, RiskLevel

MIN_EFFECT = 0.01  # one percentage point of malignant probability
FLOOR_ANSWERS = ("grew", "changed", "bleeds")  # the answers models.serving.policy.never_low reads


def photo_probabilities(ranking: Sequence[dict[str, Any]]) -> np.ndarray:
    """A stored ranking (``Prediction.to_dict()['ranking']``) as probabilities in CLASS_CODES order."""
    by_code = {entry["code"]: float(entry["probability"]) for entry in ranking}
    probabilities = np.array([by_code[code] for code in CLASS_CODES])
    return np.asarray(probabilities / probabilities.sum())


def answer_effects(
    classifier: Classifier, photo_ranking: Sequence[dict[str, Any]], kind: PhotoKind, answers: PatientAnswers | None
) -> dict[str, AnswerEffect]:
    """{answer name: raised or lowered}, for the answers that moved this result; empty without answers. Only
    phone photos' results combine the answers (models/serving/inference.py); any photo's may meet the clinical
    floors."""
    if answers is None or not answers.known():
        return {}
    photo = photo_probabilities(photo_ranking)
    effects: dict[str, AnswerEffect] = {}
    combined = photo
    if kind == PhotoKind.CLINICAL and classifier.triage is not None:
        triage = classifier.triage

        def malignant(given: PatientAnswers) -> float:
            return float(triage.combine(photo, given)[MALIGNANT_MASK].sum())

        with_all = malignant(answers)
        for name in answers.known():
            change = with_all - malignant(answers.model_copy(update={name: None}))
            if abs(change) >= MIN_EFFECT:
                effects[name] = AnswerEffect.RAISED if change > 0 else AnswerEffect.LOWERED
        combined = triage.combine(photo, answers)
    unfloored = assess_risk(combined, classifier.kind_policy(kind), None).risk
    if unfloored == RiskLevel.LOW and never_low(answers):  # the floor made it MEDIUM: say which answers did
        for name in FLOOR_ANSWERS:
            if getattr(answers, name):
                effects[name] = AnswerEffect.RAISED
    return effects
