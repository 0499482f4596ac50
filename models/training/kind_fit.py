"""Calibration and risk thresholds of one photo kind, fitted on that kind's validation photos, and the
same fit cross-fitted (on one half of the patients or lesions, measured on the other) for honest figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.serving.metrics import softmax
from models.serving.policy import (
    MALIGNANT_MASK,
    MAX_MALIGNANT_TOLD_LOW,
    MELANOMA_SENSITIVITY,
    KindPolicy,
    assess_risk,
    choose_low_risk_threshold,
    choose_melanoma_threshold,
)
from models.training.calibration import fit_temperature
from shared.labels import MELANOMA_INDEX, PhotoKind, RiskLevel


@dataclass(frozen=True)
class KindFit:
    temperature: float
    policy: KindPolicy


def is_malignant(labels: np.ndarray) -> np.ndarray:
    return np.asarray(MALIGNANT_MASK[labels])


def fit_kind(logits: np.ndarray, labels: np.ndarray, kind: PhotoKind) -> KindFit:
    temperature = fit_temperature(logits, labels)
    probabilities = softmax(logits, temperature)
    melanoma_threshold = choose_melanoma_threshold(
        probabilities[:, MELANOMA_INDEX], labels == MELANOMA_INDEX, MELANOMA_SENSITIVITY[kind]
    )
    malignant = probabilities[:, MALIGNANT_MASK].sum(axis=1)
    low_below = choose_low_risk_threshold(malignant, is_malignant(labels), MAX_MALIGNANT_TOLD_LOW[kind])
    return KindFit(temperature, KindPolicy(melanoma_threshold, low_below))


def risks(probabilities: np.ndarray, policy: KindPolicy) -> np.ndarray:
    return np.array([assess_risk(p, policy).risk for p in probabilities])


def two_fold_groups(groups: list[str], seed: int = 0) -> np.ndarray:
    """True for the samples whose group (patient or lesion) falls in the first half."""
    unique = sorted(set(groups))
    first = set(np.random.default_rng(seed).permutation(unique)[: len(unique) // 2])
    return np.array([group in first for group in groups])


def cross_fitted_probabilities(
    logits: np.ndarray, labels: np.ndarray, groups: list[str], kind: PhotoKind, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, risk levels, melanoma alerts) of every sample, each from the fit on the other half."""
    in_first = two_fold_groups(groups, seed)
    probabilities = np.zeros_like(logits, dtype=np.float64)
    levels = np.empty(len(labels), dtype=object)
    alerts = np.zeros(len(labels), dtype=bool)
    for fit_mask in (in_first, ~in_first):
        fit = fit_kind(logits[fit_mask], labels[fit_mask], kind)
        held_out = softmax(logits[~fit_mask], fit.temperature)
        probabilities[~fit_mask] = held_out
        levels[~fit_mask] = risks(held_out, fit.policy)
        alerts[~fit_mask] = held_out[:, MELANOMA_INDEX] >= fit.policy.melanoma_alert_threshold
    return probabilities, levels, alerts


def malignant_told_low_share(levels: np.ndarray, labels: np.ndarray) -> float:
    malignant = is_malignant(labels)
    return float((levels[malignant] == RiskLevel.LOW).mean())
