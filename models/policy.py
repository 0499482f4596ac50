"""Risk levels and the melanoma alert: defined once, here, from calibrated probabilities.

Clinical reasoning
- Melanoma is the deadliest of the seven and the one where delay costs most, so its alert threshold is
  set on validation data for a melanoma sensitivity of at least 0.90, accepting false alarms: a missed
  melanoma is far worse than an unnecessary visit. Any melanoma alert is HIGH risk.
- Basal cell carcinoma is malignant (locally invasive) and actinic keratosis / intraepithelial
  carcinoma is pre-malignant or in-situ cancer. Together with melanoma they make up the "malignant"
  probability mass. When that mass is at least HIGH_MALIGNANT_PROBABILITY, malignancy is more likely
  than not: HIGH risk.
- When the malignant mass is at least MEDIUM_MALIGNANT_PROBABILITY, or the single most likely class
  is malignant, malignancy cannot be ruled out: MEDIUM risk. So bcc or akiec are never called low
  risk when they are the likely diagnosis.
- Otherwise (benign keratosis, dermatofibroma, nevus, vascular lesion clearly dominate): LOW risk,
  which still means "watch for change", never "nothing to worry about".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.labels import CLASS_CODES, MALIGNANT_CODES, MELANOMA_INDEX, RiskLevel

HIGH_MALIGNANT_PROBABILITY = 0.5
MEDIUM_MALIGNANT_PROBABILITY = 0.2
TARGET_MELANOMA_SENSITIVITY = 0.90

_MALIGNANT_MASK = np.array([code in MALIGNANT_CODES for code in CLASS_CODES])


@dataclass(frozen=True)
class RiskAssessment:
    risk: RiskLevel
    melanoma_alert: bool
    malignant_probability: float


def assess_risk(probabilities: np.ndarray, melanoma_alert_threshold: float) -> RiskAssessment:
    """Risk level and melanoma alert for one calibrated probability vector (CLASS_CODES order)."""
    melanoma_alert = bool(probabilities[MELANOMA_INDEX] >= melanoma_alert_threshold)
    malignant = float(probabilities[_MALIGNANT_MASK].sum())
    top_is_malignant = bool(_MALIGNANT_MASK[int(np.argmax(probabilities))])
    if melanoma_alert or malignant >= HIGH_MALIGNANT_PROBABILITY:
        risk = RiskLevel.HIGH
    elif malignant >= MEDIUM_MALIGNANT_PROBABILITY or top_is_malignant:
        risk = RiskLevel.MEDIUM
    else:
        risk = RiskLevel.LOW
    return RiskAssessment(risk, melanoma_alert, malignant)


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
