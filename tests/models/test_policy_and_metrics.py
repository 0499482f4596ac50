"""Risk policy, threshold choice, temperature scaling and metrics on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from models.serving.metrics import balanced_accuracy, expected_calibration_error, roc_auc, softmax
from models.serving.policy import KindPolicy, assess_risk, choose_low_risk_threshold, choose_melanoma_threshold
from models.training.calibration import fit_temperature
from shared.labels import CLASS_CODES, MelanomaFinding, RiskLevel


def probabilities(**by_code: float) -> np.ndarray:
    vector = np.array([by_code.get(code, 0.0) for code in CLASS_CODES])
    rest = 1.0 - vector.sum()
    vector[CLASS_CODES.index("nv")] += rest
    return vector


POLICY = KindPolicy(melanoma_alert_threshold=0.3, low_risk_below=0.2)


def test_melanoma_over_threshold_is_alert_and_high_risk() -> None:
    assessment = assess_risk(probabilities(mel=0.2), KindPolicy(melanoma_alert_threshold=0.15, low_risk_below=0.2))
    assert assessment.melanoma_finding != MelanomaFinding.NONE and assessment.risk == RiskLevel.HIGH


def test_an_alert_led_by_another_class_says_melanoma_cannot_be_ruled_out() -> None:
    led_by_mole = assess_risk(probabilities(mel=0.35), POLICY)  # nevus takes the remaining 0.65
    assert led_by_mole.melanoma_finding == MelanomaFinding.CANNOT_RULE_OUT and led_by_mole.risk == RiskLevel.HIGH
    led_by_melanoma = assess_risk(probabilities(mel=0.7), POLICY)
    assert led_by_melanoma.melanoma_finding == MelanomaFinding.LIKELY


def test_likely_bcc_or_akiec_is_never_low_risk() -> None:
    assert assess_risk(probabilities(bcc=0.6), POLICY).risk == RiskLevel.HIGH
    assert assess_risk(probabilities(akiec=0.3, bkl=0.5), POLICY).risk == RiskLevel.MEDIUM
    assert assess_risk(probabilities(bcc=0.35, bkl=0.3), POLICY).risk == RiskLevel.MEDIUM
    assert assess_risk(probabilities(akiec=0.25, bkl=0.3), POLICY).risk == RiskLevel.MEDIUM


def test_low_risk_needs_the_malignant_mass_under_the_kinds_threshold() -> None:
    assert assess_risk(probabilities(bcc=0.1, akiec=0.05), POLICY).risk == RiskLevel.LOW
    strict = KindPolicy(melanoma_alert_threshold=0.3, low_risk_below=0.1)
    assert assess_risk(probabilities(bcc=0.1, akiec=0.05), strict).risk == RiskLevel.MEDIUM


def test_clearly_benign_is_low_risk_without_alert() -> None:
    assessment = assess_risk(probabilities(mel=0.02, bcc=0.02, akiec=0.01), POLICY)
    assert assessment.risk == RiskLevel.LOW and assessment.melanoma_finding == MelanomaFinding.NONE


def test_low_risk_threshold_lets_at_most_the_allowed_share_of_malignant_lesions_under_it() -> None:
    rng = np.random.default_rng(2)
    malignant = rng.uniform(0.0, 1.0, 200)
    threshold = choose_low_risk_threshold(malignant, np.ones(200, bool), max_missed=0.05)
    assert (malignant < threshold).mean() <= 0.05
    assert (malignant <= threshold).mean() > 0.05  # any higher threshold lets more through


def test_threshold_meets_the_sensitivity_target_with_best_specificity() -> None:
    rng = np.random.default_rng(0)
    positives = rng.uniform(0.2, 1.0, 100)
    negatives = rng.uniform(0.0, 0.6, 400)
    scores = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(100), np.zeros(400)])
    threshold = choose_melanoma_threshold(scores, labels, sensitivity=0.9)
    assert (positives >= threshold).mean() >= 0.9
    assert (positives >= np.nextafter(threshold, 1)).mean() < 0.9  # any higher threshold misses the target


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2.0, size=(4000, 7))
    labels = np.array([rng.choice(7, p=p) for p in softmax(true_logits)])
    fitted = fit_temperature(true_logits * 3.0, labels)  # over-confident by a factor of three
    assert fitted == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(softmax(true_logits * 3.0, fitted), labels) < 0.03


def test_metrics_on_known_values() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert balanced_accuracy(labels, np.array([0, 0, 1, 0, 2, 0])) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    confident_and_right = np.eye(3)[labels]
    assert expected_calibration_error(confident_and_right, labels) == pytest.approx(0.0)
