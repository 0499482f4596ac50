"""Risk levels and the melanoma alert: defined once, here, from calibrated probabilities, per photo kind.

Three levels, each with its own meaning and cost:
- HIGH: likely cancer. Forwarded to the clinicians for prompt review (the only level that is; a clinic that gets
  half of all benign moles as alerts stops reading them, so the benign share forwarded is budgeted).
- MEDIUM: cannot be called benign. The patient is told to see their GP within weeks; not an alert.
- LOW: looks benign. Watch for change (never "nothing to worry about"); the answers' clinical floors still apply.

Clinical reasoning
- The "malignant" probability mass is melanoma + basal cell carcinoma + actinic keratosis / intraepithelial
  carcinoma (squamous cell carcinoma is scored with it): malignant, or pre-malignant / in-situ cancer.
- HIGH has two rules. Melanoma, the deadliest and the one where delay costs most, has its own alert threshold on
  its probability, far under 0.5; the policy says which it is (MelanomaFinding): LIKELY when melanoma is also the
  top class, CANNOT_RULE_OUT when another class leads (texts then say "melanoma cannot be ruled out", never
  "melanoma"). And a malignant mass of at least ``high_malignant_at`` (never under 0.5: more likely malignant
  than not) is HIGH.
- LOW must be safe: a patient told LOW may not see a doctor. So LOW needs a malignant mass under
  ``low_risk_below`` *and* a benign top class. Everything between LOW and HIGH is MEDIUM.
- Dermoscopy (HAM10000's validation lesions): the melanoma threshold is set for a sensitivity of at least
  TARGET_MELANOMA_SENSITIVITY, LOW for at most 3 % of malignant lesions under it (models/training/kind_fit.py).
- Phone photos (what patients send; the harder kind): the thresholds are chosen by nested, patient-grouped
  cross-validation (models/training/operating_point.py): at most a set share of malignant lesions under
  LOW, and within a budget of benign lesions forwarded, the melanoma and malignant rules that forward the most
  melanomas. Those limits are chosen on inner folds so that *other* patients meet the clinic's targets
  (at most 5 % of malignant told LOW, at most 30 % of benign forwarded), and measured on outer folds, never on
  the photos they were fitted on. The figures, and the targets still missed, are in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.answers import PatientAnswers
from shared.labels import (
    CLASS_CODES,
    MALIGNANT_CODES,
    MELANOMA_INDEX,
    MelanomaFinding,
    PhotoKind,
    RiskLevel,
    melanoma_finding,
)

HIGH_MALIGNANT_PROBABILITY = 0.5
TARGET_MELANOMA_SENSITIVITY = 0.90
# The fits of models/training/kind_fit.py (dermoscopy; phone photos use models/training/operating_point.py).
MAX_MALIGNANT_TOLD_LOW: dict[PhotoKind, float] = {PhotoKind.DERMOSCOPIC: 0.03}
MELANOMA_SENSITIVITY: dict[PhotoKind, float] = {PhotoKind.DERMOSCOPIC: TARGET_MELANOMA_SENSITIVITY}

MALIGNANT_MASK = np.array([code in MALIGNANT_CODES for code in CLASS_CODES])


@dataclass(frozen=True)
class KindPolicy:
    melanoma_alert_threshold: float
    low_risk_below: float
    high_malignant_at: float = HIGH_MALIGNANT_PROBABILITY  # phone photos: set by models/training/operating_point.py


@dataclass(frozen=True)
class RiskAssessment:
    risk: RiskLevel
    melanoma_finding: MelanomaFinding
    malignant_probability: float


def assess_risk(probabilities: np.ndarray, policy: KindPolicy, answers: PatientAnswers | None = None) -> RiskAssessment:
    """Risk level and melanoma finding for one calibrated probability vector (CLASS_CODES order), with the
    clinical floors of the patient's answers."""
    top = int(np.argmax(probabilities))
    alert = bool(probabilities[MELANOMA_INDEX] >= policy.melanoma_alert_threshold)
    finding = melanoma_finding(alert, CLASS_CODES[top])
    malignant = float(probabilities[MALIGNANT_MASK].sum())
    if finding != MelanomaFinding.NONE or malignant >= policy.high_malignant_at:
        risk = RiskLevel.HIGH
    elif malignant >= policy.low_risk_below or MALIGNANT_MASK[top]:
        risk = RiskLevel.MEDIUM
    else:
        risk = RiskLevel.LOW
    if risk == RiskLevel.LOW and answers is not None and never_low(answers):
        risk = RiskLevel.MEDIUM
    return RiskAssessment(risk, finding, malignant)


RISK_ORDER = (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH)


def assess_with_answers(
    photo_probabilities: np.ndarray,
    combined_probabilities: np.ndarray,
    policy: KindPolicy,
    answers: PatientAnswers,
) -> RiskAssessment:
    """The risk of a result combined with the patient's answers (models/serving/triage.py). The answers may raise it;
    they lower it by one level at most, and never take away a melanoma alert the photo alone raised: the answer
    model learned from a few hundred phone photos, and a melanoma missed, or a HIGH photo told LOW, is the costliest
    error this product can make. A warning sign answered "yes" never lowers the malignant probability (the answer
    model's fit is constrained so), only "no" answers, age under 50, sex and body site can."""
    photo = assess_risk(photo_probabilities, policy)
    combined = assess_risk(combined_probabilities, policy, answers)
    if photo.melanoma_finding != MelanomaFinding.NONE and combined.melanoma_finding == MelanomaFinding.NONE:
        top = CLASS_CODES[int(np.argmax(combined_probabilities))]
        return RiskAssessment(RiskLevel.HIGH, melanoma_finding(True, top), combined.malignant_probability)
    floor = RISK_ORDER[max(RISK_ORDER.index(photo.risk) - 1, 0)]
    if RISK_ORDER.index(combined.risk) < RISK_ORDER.index(floor):
        return RiskAssessment(floor, combined.melanoma_finding, combined.malignant_probability)
    return combined


def never_low(answers: PatientAnswers) -> bool:
    """Clinical floors: answer patterns that are never LOW risk, whatever the photo shows.

    - Bleeding together with growth or change: the NICE 7-point checklist scores change (2 points) and
      oozing or bleeding (1 point); together they call for a doctor's look, not for watching.
    - A spot that grew *and* changed in shape or colour: the checklist's two major criteria.
    """
    changing = bool(answers.grew) or bool(answers.changed)
    return (bool(answers.bleeds) and changing) or (bool(answers.grew) and bool(answers.changed))


def choose_melanoma_threshold(
    melanoma_probability: np.ndarray, is_melanoma: np.ndarray, sensitivity: float = TARGET_MELANOMA_SENSITIVITY
) -> float:
    """The highest threshold whose melanoma sensitivity on these data is at least ``sensitivity``.

    The highest such threshold gives the best specificity that still meets the sensitivity target.
    """
    positives = np.sort(melanoma_probability[is_melanoma.astype(bool)])[::-1]
    if len(positives) == 0:
        raise ValueError("no melanoma in the data: cannot choose a threshold")
    needed = int(np.ceil(sensitivity * len(positives)))
    return float(positives[needed - 1])


def choose_low_risk_threshold(malignant_probability: np.ndarray, is_malignant: np.ndarray, max_missed: float) -> float:
    """The highest malignant-probability threshold under which at most ``max_missed`` of the malignant
    lesions fall (those would be told LOW if their top class were benign)."""
    positives = np.sort(malignant_probability[is_malignant.astype(bool)])
    if len(positives) == 0:
        raise ValueError("no malignant lesion in the data: cannot choose a threshold")
    allowed = int(np.floor(max_missed * len(positives)))  # how many may fall under the threshold
    return float(positives[allowed])  # strictly under it: exactly ``allowed`` lesions (ties aside)
