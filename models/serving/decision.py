"""The clinical decision, a step of its own: a photo's calibrated probabilities, its kind and the patient's
answers in; the probabilities the patient reads, the risk with its melanoma finding, and which answers moved it,
out. Computed once per result (the classifier calls it; nothing evaluates the policy again on the way).

Only phone photos' results combine the answers (the answer model, models/serving/triage.py, was fitted and
measured on phone photos only); any photo's may meet the clinical floors of models/serving/policy.py.

An answer's effect is measured by leaving it out: the malignant probability (melanoma, basal cell carcinoma,
actinic keratosis) with every answer, minus the same without that one answer. Effects under MIN_EFFECT are not
reported (the answer changed almost nothing). The floors (answer patterns that are never LOW risk) count as
raising the risk for the answers that make them.

Two things about the photo, not the lesion, move the risk after that: a spot that changed since its earlier photo
is one level more urgent (RAISED_BY_CHANGE), and skin outside the tones SkinSense was measured on is never LOW
(models/serving/skin_tone.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.serving.policy import (
    MALIGNANT_MASK,
    RISK_ORDER,
    KindPolicy,
    RiskAssessment,
    assess_risk,
    assess_with_answers,
    never_low,
)
from models.serving.skin_tone import SkinTone
from models.serving.triage import TriageModel
from shared.answers import AnswerEffect, PatientAnswers
from shared.labels import CLASS_CODES, MelanomaFinding, PhotoKind, RiskLevel, melanoma_finding

MIN_EFFECT = 0.01  # one percentage point of malignant probability
FLOOR_ANSWERS = ("grew", "changed", "bleeds")  # the answers models.serving.policy.never_low reads


@dataclass(frozen=True)
class ClinicalDecision:
    probabilities: np.ndarray  # CLASS_CODES order: the photo's, combined with the answers where they apply
    assessment: RiskAssessment
    answers_used: list[str]  # the answers that went into the probabilities (empty: photo only)
    answer_effects: dict[str, AnswerEffect]  # {answer: raised or lowered}, for those that moved this result
    raised_by_change: bool = False  # the spot changed since its earlier photo, and that raised the risk
    raised_by_skin_tone: bool = False  # LOW became MEDIUM: the skin is outside the tones SkinSense was measured on
    raised_by_other_kind: bool = False  # the other kind's network found it riskier (a photo of uncertain kind)


@dataclass(frozen=True)
class OtherKindResult:
    """A photo whose kind the picture head could not tell (models/serving/screening.py) is read by the network of
    the more likely kind, and its risk is never under what the other kind's network found on the photo alone:
    that network's risk level and melanoma alert."""

    risk: RiskLevel
    melanoma_alert: bool

    def to_dict(self) -> dict[str, object]:
        return {"risk": self.risk.value, "melanoma_alert": self.melanoma_alert}


# A spot that changed since its earlier photo (models/serving/spot_change.py) is one level more urgent: change in
# size, shape or colour is the strongest sign of melanoma (the E of ABCDE; 2 points on the NICE 7-point checklist).
# Change only raises; no change never lowers.
RAISED_BY_CHANGE = {RiskLevel.LOW: RiskLevel.MEDIUM, RiskLevel.MEDIUM: RiskLevel.HIGH, RiskLevel.HIGH: RiskLevel.HIGH}


def decide(
    photo: np.ndarray,
    kind: PhotoKind,
    answers: PatientAnswers | None,
    policy: KindPolicy,
    triage: TriageModel | None,
    *,
    spot_changed: bool = False,
    skin_tone: SkinTone | None = None,
    other_kind: OtherKindResult | None = None,
) -> ClinicalDecision:
    """The decision for one photo (``photo``: its calibrated probabilities). Unknown answers change nothing:
    with none known this is exactly the photo-only result. ``spot_changed``: the spot looks changed since its
    earlier photo (RAISED_BY_CHANGE). ``skin_tone``: the skin around the lesion (None: not estimated); outside the
    tones the kind was measured on, LOW becomes MEDIUM. ``other_kind``: the photo's kind was uncertain, and this is
    what the other kind's network found (OtherKindResult): the risk is never under it, its alert is kept."""
    decision = _decide(photo, kind, answers, policy, triage)
    if other_kind is not None:
        decision = not_under(decision, other_kind)
    if spot_changed and decision.assessment.risk != RiskLevel.HIGH:
        raised = replace(decision.assessment, risk=RAISED_BY_CHANGE[decision.assessment.risk])
        decision = replace(decision, assessment=raised, raised_by_change=True)
    # The kind's figures (how many cancers it tells LOW) were not measured on such skin, so LOW's "no appointment
    # is needed" cannot be said; MEDIUM sends the patient to a GP. Only LOW moves: the skin tone is no sign of a
    # cancer, only of less certainty.
    if skin_tone is not None and skin_tone.outside_measured_range and decision.assessment.risk == RiskLevel.LOW:
        floored = replace(decision.assessment, risk=RiskLevel.MEDIUM)
        decision = replace(decision, assessment=floored, raised_by_skin_tone=True)
    return decision


def not_under(decision: ClinicalDecision, other_kind: OtherKindResult) -> ClinicalDecision:
    """The decision, raised to the other kind's risk and alert where they are higher. The ranking stays the more
    likely kind's (its classes are that network's best reading); an alert only the other network raised reads
    "melanoma cannot be ruled out" unless melanoma also leads here."""
    assessment = decision.assessment
    risk = max(assessment.risk, other_kind.risk, key=RISK_ORDER.index)
    finding = assessment.melanoma_finding
    if finding == MelanomaFinding.NONE and other_kind.melanoma_alert:
        finding = melanoma_finding(True, CLASS_CODES[int(np.argmax(decision.probabilities))])
    if (risk, finding) == (assessment.risk, assessment.melanoma_finding):
        return decision
    raised = replace(assessment, risk=risk, melanoma_finding=finding)
    return replace(decision, assessment=raised, raised_by_other_kind=True)


def _decide(
    photo: np.ndarray, kind: PhotoKind, answers: PatientAnswers | None, policy: KindPolicy, triage: TriageModel | None
) -> ClinicalDecision:
    known = [] if answers is None else answers.known()
    if answers is None or not known:
        return ClinicalDecision(photo, assess_risk(photo, policy, answers), [], {})
    effects: dict[str, AnswerEffect] = {}
    if kind == PhotoKind.CLINICAL and triage is not None:
        combined = triage.combine(photo, answers)
        assessment = assess_with_answers(photo, combined, policy, answers)
        with_all = float(combined[MALIGNANT_MASK].sum())
        for name in known:
            without = triage.combine(photo, answers.model_copy(update={name: None}))
            change = with_all - float(without[MALIGNANT_MASK].sum())
            if abs(change) >= MIN_EFFECT:
                effects[name] = AnswerEffect.RAISED if change > 0 else AnswerEffect.LOWERED
        used = known
    else:
        combined, assessment, used = photo, assess_risk(photo, policy, answers), []
    if assess_risk(combined, policy, None).risk == RiskLevel.LOW and never_low(answers):  # the floor made it MEDIUM
        for name in FLOOR_ANSWERS:
            if getattr(answers, name):
                effects[name] = AnswerEffect.RAISED
    return ClinicalDecision(combined, assessment, used, effects)
