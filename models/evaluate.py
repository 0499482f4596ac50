"""Evaluate the shipped artifact on its validation split (``skinsense evaluate``).

Writes metrics.json and two plots (confusion matrix, reliability diagram) to the output folder.
Calibration figures are given two ways: fitted and measured on the whole validation split (what the
shipped temperature does there), and 2-fold cross-fitted (temperature and threshold fitted on one half
of the lesions, measured on the other), which is the honest estimate for unseen data.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import fit_temperature
from models.data import resolve_data_dir
from models.inference import ARTIFACT_DIR, RUNTIMES, Classifier
from models.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    per_class_recall,
    reliability_bins,
    roc_auc,
    sensitivity_specificity,
    softmax,
)
from models.package import validation_logits, validation_samples
from models.policy import choose_melanoma_threshold
from shared.labels import CLASS_CODES, MELANOMA_INDEX

log = logging.getLogger(__name__)


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions)
    predicted_counts = matrix.sum(axis=0)
    precision = np.divide(
        np.diag(matrix), predicted_counts, out=np.full(len(CLASS_CODES), np.nan), where=predicted_counts > 0
    )
    recall = per_class_recall(labels, predictions)
    is_melanoma = labels == MELANOMA_INDEX
    sensitivity, specificity = sensitivity_specificity(probabilities[:, MELANOMA_INDEX], is_melanoma, threshold)
    return {
        "images": len(labels),
        "accuracy": float((predictions == labels).mean()),
        "balanced_accuracy": balanced_accuracy(labels, predictions),
        "per_class": {
            code: {
                "precision": _finite(precision[i]),
                "recall": _finite(recall[i]),
                "support": int((labels == i).sum()),
            }
            for i, code in enumerate(CLASS_CODES)
        },
        "confusion_matrix": {"rows_true_columns_predicted": list(CLASS_CODES), "counts": matrix.tolist()},
        "melanoma_roc_auc": roc_auc(probabilities[:, MELANOMA_INDEX], is_melanoma),
        "melanoma_alert_threshold": threshold,
        "melanoma_sensitivity": sensitivity,
        "melanoma_specificity": specificity,
    }


def cross_fitted_calibration(
    logits: np.ndarray, labels: np.ndarray, lesion_ids: list[str], seed: int = 0
) -> dict[str, float]:
    """Fit temperature and threshold on one half of the lesions, measure on the other, both ways round."""
    rng = np.random.default_rng(seed)
    lesions = sorted(set(lesion_ids))
    first_half = set(rng.permutation(lesions)[: len(lesions) // 2])
    in_first = np.array([lesion in first_half for lesion in lesion_ids])
    ece, sensitivity, specificity = [], [], []
    for fit_mask in (in_first, ~in_first):
        temperature = fit_temperature(logits[fit_mask], labels[fit_mask])
        fit_probabilities = softmax(logits[fit_mask], temperature)
        threshold = choose_melanoma_threshold(fit_probabilities[:, MELANOMA_INDEX], labels[fit_mask] == MELANOMA_INDEX)
        held_out = softmax(logits[~fit_mask], temperature)
        ece.append(expected_calibration_error(held_out, labels[~fit_mask]))
        sens, spec = sensitivity_specificity(
            held_out[:, MELANOMA_INDEX], labels[~fit_mask] == MELANOMA_INDEX, threshold
        )
        sensitivity.append(sens)
        specificity.append(spec)
    return {
        "ece_after_calibration": float(np.mean(ece)),
        "melanoma_sensitivity": float(np.mean(sensitivity)),
        "melanoma_specificity": float(np.mean(specificity)),
    }


def evaluate(
    data_dir: Path, output_dir: Path, artifact_dir: Path = ARTIFACT_DIR, runtime: str | None = None
) -> dict[str, Any]:
    classifier = Classifier(artifact_dir, runtime=runtime)  # type: ignore[arg-type]
    logits, labels = validation_logits(classifier, data_dir, artifact_dir)
    lesion_ids = [s.lesion_id for s in validation_samples(data_dir, artifact_dir)]
    uncalibrated = softmax(logits)
    calibrated = softmax(logits, classifier.temperature)
    report: dict[str, Any] = {
        "model_version": classifier.version,
        "runtime": classifier.runtime_name,
        "split": "validation, by lesion_id (no lesion in training), stratified by class",
        "lesions": len(set(lesion_ids)),
        "temperature": classifier.temperature,
        **classification_metrics(calibrated, labels, classifier.melanoma_alert_threshold),
        "ece_before_calibration": expected_calibration_error(uncalibrated, labels),
        "ece_after_calibration": expected_calibration_error(calibrated, labels),
        "cross_fitted": cross_fitted_calibration(logits, labels, lesion_ids),
        "test_time_views": list(classifier.views),
    }
    if classifier.views != ("identity",):
        # What the averaging over views buys, for the record: the same model on the photo alone.
        classifier.views = ("identity",)
        single, _ = validation_logits(classifier, data_dir, artifact_dir)
        single_probabilities = softmax(single, fit_temperature(single, labels))
        report["single_view"] = {
            "balanced_accuracy": balanced_accuracy(labels, single_probabilities.argmax(axis=1)),
            "accuracy": float((single_probabilities.argmax(axis=1) == labels).mean()),
            "melanoma_roc_auc": roc_auc(single_probabilities[:, MELANOMA_INDEX], labels == MELANOMA_INDEX),
        }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot_confusion_matrix(np.array(report["confusion_matrix"]["counts"]), output_dir / "confusion_matrix.png")
    _plot_reliability(uncalibrated, calibrated, labels, output_dir / "reliability.png")
    return report


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _plot_confusion_matrix(matrix: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(
            column,
            row,
            f"{count}\n{normalised[row, column]:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if normalised[row, column] > 0.5 else "black",
        )
    axes.set_xticks(range(len(CLASS_CODES)), CLASS_CODES)
    axes.set_yticks(range(len(CLASS_CODES)), CLASS_CODES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (validation; row-normalised)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path, bins: int = 15) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    for probabilities, name in ((before, "before"), (after, "after temperature scaling")):
        # Bins holding fewer than 5 images are too noisy to draw.
        points = [(c, a) for share, c, a in reliability_bins(probabilities, labels, bins) if share * len(labels) >= 5]
        centres = [c for c, _ in points]
        accuracies = [a for _, a in points]
        ece = expected_calibration_error(probabilities, labels, bins)
        axes.plot(centres, accuracies, marker="o", label=f"{name} (ECE {ece:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set_xlabel("confidence (top class probability)")
    axes.set_ylabel("accuracy")
    axes.set_title("Reliability diagram (validation)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--output", type=Path, default=Path("models/evaluation"))
    parser.add_argument("--runtime", choices=RUNTIMES, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    report = evaluate(data_dir, args.output, args.artifact_dir, args.runtime)
    summary = {
        k: report[k]
        for k in (
            "model_version",
            "accuracy",
            "balanced_accuracy",
            "melanoma_roc_auc",
            "melanoma_sensitivity",
            "melanoma_specificity",
            "ece_before_calibration",
            "ece_after_calibration",
            "cross_fitted",
        )
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
