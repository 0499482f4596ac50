"""Risk levels and the melanoma alert: defined once, here, from calibrated probabilities, per photo kind.

Clinical reasoning
- Melanoma is the deadliest of the seven and the one where delay costs most, so its alert threshold is
  set per photo kind on that kind's validation photos for a high melanoma sensitivity (dermoscopy: at
  least TARGET_MELANOMA_SENSITIVITY; phone photos: see PHONE_MELANOMA_SENSITIVITY), accepting false
  alarms: a missed melanoma is far worse than an unnecessary visit. Any melanoma alert is HIGH risk.
- An alert does not mean melanoma is the most likely class: the threshold is far below 0.5. So the policy
  says which it is (MelanomaFinding): LIKELY when melanoma is also the top class, CANNOT_RULE_OUT when
  another class leads. Texts must say "melanoma cannot be ruled out" for the second, never "melanoma".
- Basal cell carcinoma is malignant (locally invasive); actinic keratosis / intraepithelial carcinoma is
  pre-malignant or in-situ cancer (and squamous cell carcinoma is scored with it). Together with melanoma
  they make up the "malignant" probability mass. When that mass is at least HIGH_MALIGNANT_PROBABILITY,
  malignancy is more likely than not: HIGH risk.
- LOW risk must be safe: a patient told LOW may not see a doctor. So LOW is given only when the malignant
  mass is under the kind's ``low_risk_below``, chosen on that kind's validation photos so that at most
  MAX_MALIGNANT_TOLD_LOW of malignant or pre-malignant lesions fall under it (a margin under the product
  targets, 5 % on dermoscopy and 10 % on phone photos, since the hidden patients are not these), and the
  most likely class must be benign. Everything between is MEDIUM: "have it checked in the coming weeks".
  LOW still means "watch for change", never "nothing to worry about".
- Phone photos are harder for the model (its figures per kind are in the model card), so their
  thresholds are lower: more phone photos are MEDIUM, by design.
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
# PAD-UFES-20 has 15 melanoma photos: asking 0.90 of them (14 of 15) pushed the phone threshold to a
# melanoma probability of 0.006 and cost half the specificity. The product target on phone photos is 0.80;
# 0.85 keeps a margin over it, and the measured (cross-fitted) figures are reported as they are.
PHONE_MELANOMA_SENSITIVITY = 0.85
# Phone photos: 0.06 was the first choice; it told only 28 % of benign phone lesions LOW, so the margin was
# moved to 0.08, still under the 10 % target (cross-fitted figures in the model card).
MAX_MALIGNANT_TOLD_LOW: dict[PhotoKind, float] = {PhotoKind.DERMOSCOPIC: 0.03, PhotoKind.CLINICAL: 0.08}
MELANOMA_SENSITIVITY: dict[PhotoKind, float] = {
    PhotoKind.DERMOSCOPIC: TARGET_MELANOMA_SENSITIVITY,
    PhotoKind.CLINICAL: PHONE_MELANOMA_SENSITIVITY,
}

MALIGNANT_MASK = np.array([code in MALIGNANT_CODES for code in CLASS_CODES])


@dataclass(frozen=True)
class KindPolicy:
    melanoma_alert_threshold: float
    low_risk_below: float


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
    if finding != MelanomaFinding.NONE or malignant >= HIGH_MALIGNANT_PROBABILITY:
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
    model learned from a few hundred phone photos (itching, bleeding and pain lowered melanoma there), and a
    melanoma missed, or a HIGH photo told LOW, is the costliest error this product can make."""
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
