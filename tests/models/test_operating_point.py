"""The phone photos' three risk levels and their choice by nested, patient-grouped cross-validation
(models/training/operating_point.py), and the answers that may only raise a risk where they are warning signs
(models/serving/triage.py), on the shipped artifact and PAD-UFES-20's real out-of-fold logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.serving.decision import decide
from models.serving.inference import ARTIFACT_DIR, Classifier
from models.serving.policy import HIGH_MALIGNANT_PROBABILITY, MALIGNANT_MASK, KindPolicy, assess_risk
from models.serving.triage import FEATURE_NAMES, WARNING_SIGNS, TriageModel, answer_features
from models.training.operating_point import (
    Limits,
    figures,
    fit_phone_policy,
    grouped_folds,
    load_phone_logits,
    nested_report,
    nested_runs,
    risk_levels,
)
from models.training.pad_ufes import PhoneSample
from shared.answers import LESION_QUESTIONS, AnswerEffect, PatientAnswers
from shared.labels import CLASS_CODES, MELANOMA_INDEX, PhotoKind, RiskLevel


@pytest.fixture(scope="module")
def phone_logits(phone_data_root: Path) -> tuple[list[PhoneSample], np.ndarray]:
    return load_phone_logits(ARTIFACT_DIR, phone_data_root)


def test_three_levels_each_with_its_rule() -> None:
    policy = KindPolicy(melanoma_alert_threshold=0.2, low_risk_below=0.3, high_malignant_at=0.7)

    def level(**by_code: float) -> RiskLevel:
        vector = np.array([by_code.get(code, 0.0) for code in CLASS_CODES])
        vector[CLASS_CODES.index("nv")] += 1.0 - vector.sum()
        return assess_risk(vector, policy).risk

    assert level(mel=0.25) == RiskLevel.HIGH, "the melanoma rule forwards"
    assert level(bcc=0.72) == RiskLevel.HIGH, "the malignant rule forwards"
    assert level(bcc=0.6) == RiskLevel.MEDIUM, "malignant, but under the forwarding rule: see a GP"
    assert level(bcc=0.35) == RiskLevel.MEDIUM, "cannot be called benign"
    assert level(bcc=0.1, bkl=0.5) == RiskLevel.LOW, "looks benign"


def test_the_fit_keeps_its_limits_on_the_photos_it_is_fitted_on(
    phone_logits: tuple[list[PhoneSample], np.ndarray], classifier: Classifier
) -> None:
    samples, logits = phone_logits
    labels = np.array([s.label for s in samples])
    probabilities = classifier.probabilities(logits, [PhotoKind.CLINICAL] * len(labels))
    for limits in (Limits(0.02, 0.15), Limits(0.05, 0.3)):
        policy = fit_phone_policy(probabilities, labels, limits)
        found = figures(risk_levels(probabilities, policy)[0], labels)
        assert found["malignant_told_low"] <= limits.malignant_told_low + 1e-9, (limits, found)
        assert found["benign_forwarded"] <= limits.benign_forwarded + 1e-9, (limits, found)
        assert policy.high_malignant_at >= HIGH_MALIGNANT_PROBABILITY, "HIGH only when malignancy is likelier"
    generous = fit_phone_policy(probabilities, labels, Limits(0.05, 0.3))
    strict = fit_phone_policy(probabilities, labels, Limits(0.05, 0.15))
    forwarded = [figures(risk_levels(probabilities, p)[0], labels)["melanoma_forwarded"] for p in (generous, strict)]
    assert forwarded[0] >= forwarded[1], "a larger budget of benign lesions forwards at least as many melanomas"


def test_nested_folds_never_put_a_patient_on_both_sides(phone_logits: tuple[list[PhoneSample], np.ndarray]) -> None:
    samples, _ = phone_logits
    labels = np.array([s.label for s in samples])
    patients = np.array([s.patient_id for s in samples])
    outer = grouped_folds(labels, list(patients), 5, seed=0)
    for fold in range(5):
        assert not set(patients[outer == fold]) & set(patients[outer != fold])
        inner_rows = outer != fold
        inner = grouped_folds(labels[inner_rows], list(patients[inner_rows]), 4, seed=1)
        for inner_fold in range(4):
            held, fitted = patients[inner_rows][inner == inner_fold], patients[inner_rows][inner != inner_fold]
            assert not set(held) & set(fitted)


def test_the_nested_report_scores_every_photo_once_per_repeat_with_intervals(
    phone_logits: tuple[list[PhoneSample], np.ndarray],
) -> None:
    samples, logits = phone_logits
    runs = nested_runs(samples, logits, repeats=1)
    assert all(level in set(RiskLevel) for level in runs[0].levels["photo_only"]), "every photo scored"
    report = nested_report(samples, runs)
    for rule in ("photo_only", "answers_as_served", "answers_only_raise"):
        told_low = report[rule]["malignant_told_low"]
        low, high = told_low["ci95"]
        assert told_low["of"] == sum(bool(MALIGNANT_MASK[s.label]) for s in samples)
        assert low <= told_low["share"] <= high
        assert set(report[rule]["by_fitzpatrick"]) <= {"I", "II", "III", "IV", "V", "VI", "unknown"}
    # Measured once here (the model card has the figures of the shipped artifact): the served policy keeps the
    # two hard limits on patients it never saw.
    assert report["photo_only"]["malignant_told_low"]["share"] <= 0.05
    assert report["photo_only"]["benign_forwarded"]["share"] <= 0.30


def test_a_warning_sign_answered_yes_never_lowers_the_malignant_probability(
    phone_logits: tuple[list[PhoneSample], np.ndarray], classifier: Classifier
) -> None:
    triage = TriageModel.load(ARTIFACT_DIR / "triage.npz")
    samples, logits = phone_logits
    photos = classifier.probabilities(logits, [PhotoKind.CLINICAL] * len(samples))
    rng = np.random.default_rng(0)
    for photo in photos[rng.choice(len(photos), 60, replace=False)]:
        for question in LESION_QUESTIONS:
            base = PatientAnswers(age=int(rng.integers(20, 90)), body_site=None)
            yes = base.model_copy(update={question: True})
            before = triage.combine(photo, base)[MALIGNANT_MASK].sum()
            assert triage.combine(photo, yes)[MALIGNANT_MASK].sum() >= before - 1e-12, question
        older = triage.combine(photo, PatientAnswers(age=80))[MALIGNANT_MASK].sum()
        assert older >= triage.combine(photo, PatientAnswers(age=40))[MALIGNANT_MASK].sum() - 1e-12
    assert set(WARNING_SIGNS) <= set(FEATURE_NAMES)
    assert not answer_features(PatientAnswers()).any()


def test_a_melanoma_answered_with_every_warning_sign_is_never_told_they_lowered_it(
    phone_logits: tuple[list[PhoneSample], np.ndarray], classifier: Classifier
) -> None:
    samples, logits = phone_logits
    melanomas = [i for i, s in enumerate(samples) if s.label == MELANOMA_INDEX]
    photos = classifier.probabilities(logits[melanomas], [PhotoKind.CLINICAL] * len(melanomas))
    alarmed = PatientAnswers(
        age=70, grew=True, changed=True, bleeds=True, itches=True, hurts=True, raised=True
    )  # the example
    triage = TriageModel.load(ARTIFACT_DIR / "triage.npz")
    policy = classifier.kind_policy(PhotoKind.CLINICAL)
    for photo in photos:
        decision = decide(photo, PhotoKind.CLINICAL, alarmed, policy, triage)
        lowered = [name for name, effect in decision.answer_effects.items() if effect == AnswerEffect.LOWERED]
        assert lowered == [], lowered
        alone = decide(photo, PhotoKind.CLINICAL, None, policy, triage)
        order = (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH)
        assert order.index(decision.assessment.risk) >= order.index(alone.assessment.risk)
