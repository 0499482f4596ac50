"""The seven HAM10000 diagnostic classes, in the one order used everywhere (model outputs, metadata, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    malignant: bool  # malignant or pre-malignant: never to be called low risk when likely
    everyday_name: str  # what a patient calls it; shown first, the medical name after it


LESION_CLASSES: tuple[LesionClass, ...] = (
    LesionClass(
        "akiec", "Actinic keratosis / intraepithelial carcinoma", True, "Sun-damage patch that can turn into cancer"
    ),
    LesionClass("bcc", "Basal cell carcinoma", True, "Slow-growing skin cancer"),
    LesionClass("bkl", "Benign keratosis", False, "Harmless age spot or wart-like growth"),
    LesionClass("df", "Dermatofibroma", False, "Harmless firm bump"),
    LesionClass("mel", "Melanoma", True, "Melanoma, a serious skin cancer"),
    LesionClass("nv", "Melanocytic nevus", False, "Ordinary mole"),
    LesionClass("vasc", "Vascular lesion", False, "Blood-vessel spot"),
)

CLASS_CODES: tuple[str, ...] = tuple(c.code for c in LESION_CLASSES)
CLASS_NAMES: dict[str, str] = {c.code: c.name for c in LESION_CLASSES}
EVERYDAY_NAMES: dict[str, str] = {c.code: c.everyday_name for c in LESION_CLASSES}
MELANOMA = "mel"
MELANOMA_INDEX = CLASS_CODES.index(MELANOMA)
MALIGNANT_CODES: frozenset[str] = frozenset(c.code for c in LESION_CLASSES if c.malignant)


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def forwarded(risk: RiskLevel) -> bool:
    """Whether a result goes to the clinicians: HIGH only (MEDIUM sends the patient to their GP, not an alert)."""
    return risk == RiskLevel.HIGH


class PhotoKind(StrEnum):
    """What kind of photo the model judged it was given; calibration and risk thresholds are per kind."""

    DERMOSCOPIC = "dermoscopic"  # taken through a dermatoscope: magnified, lit, often a dark round vignette
    CLINICAL = "clinical"  # an ordinary close-up, as a phone takes it


class MelanomaFinding(StrEnum):
    """What a melanoma alert means for this photo (models/serving/policy.py says why both exist)."""

    NONE = "none"  # no alert
    CANNOT_RULE_OUT = "cannot_rule_out"  # alert, but another class is the most likely
    LIKELY = "likely"  # alert, and melanoma is the most likely class


def melanoma_finding(melanoma_alert: bool, top_code: str) -> MelanomaFinding:
    if not melanoma_alert:
        return MelanomaFinding.NONE
    return MelanomaFinding.LIKELY if top_code == MELANOMA else MelanomaFinding.CANNOT_RULE_OUT
