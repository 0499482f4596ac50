"""Classification and calibration metrics, in numpy (no TensorFlow needed)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from shared.labels import CLASS_CODES


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def per_class_recall(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    recalls = []
    for k in range(len(CLASS_CODES)):
        mask = labels == k
        recalls.append(float((predictions[mask] == k).mean()) if mask.any() else np.nan)
    return np.array(recalls)


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean per-class recall over the classes present."""
    return float(np.nanmean(per_class_recall(labels, predictions)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    size = len(CLASS_CODES)
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[tuple[float, float, float]]:
    """Per non-empty equal-width confidence bin: (share of samples, mean confidence, accuracy)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    result = []
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            result.append((float(in_bin.mean()), float(confidence[in_bin].mean()), float(correct[in_bin].mean())))
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    return float(
        sum(
            share * abs(accuracy - confidence)
            for share, confidence, accuracy in reliability_bins(probabilities, labels, bins)
        )
    )


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks)."""
    positives = positives.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


Z_95 = 1.959964


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (sound for small counts and for 0 or all)."""
    if total == 0:
        return (0.0, 1.0)
    share = successes / total
    denominator = 1 + Z_95**2 / total
    centre = (share + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(share * (1 - share) / total + Z_95**2 / (4 * total**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
