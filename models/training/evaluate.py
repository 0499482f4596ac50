"""Evaluate the shipped artifact per kind of photo (``skinsense evaluate``).

- dermoscopic: HAM10000's validation split (lesions never trained on);
- clinical (phone photos): PAD-UFES-20's 328 phone photos. The shipped phone network has seen every phone
  patient, so its place is taken by the patient-grouped cross-validation runs: each photo is scored by
  the run that never saw its patient (the artifact keeps those logits).
Every photo goes through the served path (models.serving.screening: gates, then the network the picture head
routes it to: a phone photo taken for a dermoscopic one is scored by the dermoscopy network, as a patient would
get it, and one of uncertain kind gets the safer of both networks' results). The figures:
- the gates' refusal rates, by code, on each data set and on pictures that are not lesions;
- classification on the photos the gates pass: balanced accuracy (7 classes on dermoscopy; the 5 shared
  classes on phone photos, where SCC has no HAM10000 code and only counts as malignant), per-class recall,
  melanoma ROC AUC, sensitivity and specificity at the alert, the share of malignant or pre-malignant
  lesions told LOW risk and of benign lesions told LOW, and the calibration error;
- ``cross_fitted``: temperature and thresholds fitted on one half of the patients (or lesions) and measured
  on the other, both ways round: the honest estimate for unseen patients, since the shipped thresholds
  were chosen on these same photos.
Writes metrics.json, a confusion matrix per kind and a reliability diagram to the output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from models.serving.inference import ARTIFACT_DIR, RUNTIMES, Classifier
from models.serving.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    per_class_recall,
    reliability_bins,
    roc_auc,
    softmax,
)
from models.serving.preprocessing import prepare_image
from models.serving.screening import KindRoute, gate_prepared, read_as_likelier_kind
from models.serving.skin_tone import estimate_ita, ita_group
from models.training.data import Sample, load_prepared, load_prepared_images, resolve_data_dir
from models.training.kind_fit import cross_fitted_probabilities, is_malignant, malignant_told_low_share
from models.training.negatives import negative_pictures
from models.training.operating_point import OuterScores, clinic_view, nested_report, nested_runs
from models.training.pad_ufes import SHARED_CODES, PhoneSample, resolve_phone_data_root
from models.training.validation_data import CLINICAL_CV_FILE, phone_validation_samples, validation_samples
from shared.images import UnreadableImage
from shared.labels import CLASS_CODES, MELANOMA_INDEX, PhotoKind, RiskLevel

log = logging.getLogger(__name__)
NESTED_REPEATS = 3  # nested cross-validations of the phone policy, each over other patient folds
SampleT = TypeVar("SampleT", Sample, PhoneSample)


UNCERTAIN = "uncertain"  # the gates' outcome of a photo of uncertain kind (both networks ran)


def gate_routes(classifier: Classifier, images: np.ndarray) -> list[KindRoute | str]:
    """Per image: the route the gates give it, or the refusal code."""
    routes: list[KindRoute | str] = []
    for image in images:
        try:
            routes.append(gate_prepared(image, classifier)[0])
        except UnreadableImage as refusal:
            routes.append(refusal.code)
    return routes


def outcome_of(route: KindRoute | str) -> str:
    """The refusal code, the kind, or UNCERTAIN."""
    if isinstance(route, str):
        return route
    return UNCERTAIN if route.uncertain else route.kind.value


def gate_outcomes(classifier: Classifier, images: np.ndarray) -> list[str]:
    return [outcome_of(route) for route in gate_routes(classifier, images)]


def refusal_summary(outcomes: list[str]) -> dict[str, Any]:
    kinds = {kind.value for kind in PhotoKind} | {UNCERTAIN}
    counts = Counter(outcomes)
    refused = sum(n for code, n in counts.items() if code not in kinds)
    return {
        "images": len(outcomes),
        "refused_share": refused / max(len(outcomes), 1),
        "by_outcome": dict(sorted(counts.items())),
    }


def kind_metrics(
    probabilities: np.ndarray, labels: np.ndarray, levels: np.ndarray, alerts: np.ndarray, scored_codes: tuple[str, ...]
) -> dict[str, Any]:
    """Figures of one kind; balanced accuracy over ``scored_codes`` (labels outside them count elsewhere)."""
    predictions = probabilities.argmax(axis=1)
    scored = np.isin(labels, [CLASS_CODES.index(c) for c in scored_codes])
    recall = per_class_recall(labels[scored], predictions[scored])
    malignant = is_malignant(labels)
    is_melanoma = labels == MELANOMA_INDEX
    return {
        "images": len(labels),
        "balanced_accuracy": balanced_accuracy(labels[scored], predictions[scored]),
        "balanced_accuracy_classes": list(scored_codes),
        "per_class_recall": {code: _finite(recall[i]) for i, code in enumerate(CLASS_CODES) if code in scored_codes},
        "support": {code: int((labels == i).sum()) for i, code in enumerate(CLASS_CODES)},
        "melanoma_roc_auc": roc_auc(probabilities[:, MELANOMA_INDEX], is_melanoma),
        "melanoma_sensitivity": float(alerts[is_melanoma].mean()) if is_melanoma.any() else None,
        "melanoma_specificity": float((~alerts[~is_melanoma]).mean()),
        "malignant_told_low": malignant_told_low_share(levels, labels),
        "benign_told_low": float((levels[~malignant] == RiskLevel.LOW).mean()),
        "risk_shares": {level.value: float((levels == level).mean()) for level in RiskLevel},
        "ece": expected_calibration_error(probabilities, labels),
        "confusion_matrix": {
            "rows_true_columns_predicted": list(CLASS_CODES),
            "counts": confusion_matrix(labels, predictions).tolist(),
        },
    }


def evaluate_kind(
    classifier: Classifier,
    kind: PhotoKind,
    images: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    logits: np.ndarray,
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """``logits``: this kind's network on these photos, from networks that never trained on them. ``held_out``:
    (probabilities, risk levels, melanoma alerts) from policies that never saw these photos' patients (phone
    photos: the nested cross-validation's outer folds); else the two-way cross-fit of models/training/kind_fit.py."""
    routes = gate_routes(classifier, images)
    outcomes = [outcome_of(route) for route in routes]
    passed = np.array([not isinstance(route, str) for route in routes])
    # Each photo's result from this kind's network (the held-out logits) and, where its route asks for it (taken
    # for the other kind, or of uncertain kind), the other kind's network, as served.
    other_kind = next(k for k in PhotoKind if k != kind)
    results = {kind: classifier.probabilities(logits, [kind] * len(logits))}
    needs_other = [i for i, r in enumerate(routes) if isinstance(r, KindRoute) and (r.uncertain or r.kind != kind)]
    results[other_kind] = np.zeros_like(results[kind])
    if needs_other:
        other_logits = classifier.logits(images[needs_other], other_kind)
        results[other_kind][needs_other] = classifier.probabilities(other_logits, [other_kind] * len(needs_other))
    predictions = []
    for index, route in enumerate(routes):
        if isinstance(route, str):
            continue
        likely = classifier.prediction(results[route.kind][index], route.kind)
        if route.uncertain:
            other = next(k for k in PhotoKind if k != route.kind)
            likely = read_as_likelier_kind(classifier, likely, classifier.prediction(results[other][index], other))
        predictions.append(likely)
    probabilities = np.stack([p.class_probabilities() for p in predictions])
    levels = np.array([p.risk for p in predictions])
    alerts = np.array([p.melanoma_alert for p in predictions])
    scored_codes = CLASS_CODES if kind == PhotoKind.DERMOSCOPIC else SHARED_CODES
    held_out_probabilities, held_out_levels, held_out_alerts = held_out or cross_fitted_probabilities(
        logits, labels, groups, kind
    )
    uncalibrated = softmax(logits)
    shipped = classifier.metadata.kinds[kind]
    report = {
        "clinic": clinic_view(levels, probabilities, labels[passed], scored_codes),
        "gates": refusal_summary(outcomes),
        "photo_kind_chosen": {k: float(np.mean([o == k for o in outcomes])) for k in (*PhotoKind, UNCERTAIN)},
        "as_shipped": kind_metrics(probabilities, labels[passed], levels, alerts, scored_codes),
        "cross_fitted": {
            key: value
            for key, value in kind_metrics(
                held_out_probabilities, labels, held_out_levels, held_out_alerts, scored_codes
            ).items()
            if key not in ("confusion_matrix", "support", "per_class_recall", "balanced_accuracy_classes")
        },
        "ece_before_calibration": expected_calibration_error(uncalibrated, labels),
        "settings": shipped.model_dump(),
    }
    report["_plot"] = (uncalibrated, softmax(logits, shipped.temperature), labels)
    return report


def skin_tone_groups(images: np.ndarray) -> list[str | None]:
    """Each photo's ITA group (models/serving/skin_tone.py); None where the skin could not be measured."""
    estimates = [estimate_ita(image) for image in images]
    return [None if ita is None else ita_group(ita).value for ita in estimates]


def answers_cross_validated(runs: list[OuterScores], labels: np.ndarray) -> dict[str, Any]:
    """Phone photos photo only, with the patients' recorded answers as served, and with the answers only
    raising: the outer folds of the nested cross-validation (models/training/operating_point.py), where the
    policy and the answer model were fitted on other patients."""
    first = runs[0]
    results: dict[str, Any] = {}
    for name, rule in (
        ("photo_only", "photo_only"),
        ("with_answers", "answers_as_served"),
        ("answers_only_raise", "answers_only_raise"),
    ):
        figures = kind_metrics(first.probabilities(rule), labels, first.levels[rule], first.alerts[rule], SHARED_CODES)
        results[name] = {k: v for k, v in figures.items() if k not in ("confusion_matrix", "balanced_accuracy_classes")}
    results["note"] = "outer folds of the nested, patient-grouped cross-validation (first repeat)"
    return results


def evaluate(
    data_dir: Path,
    phone_root: Path,
    output_dir: Path,
    artifact_dir: Path = ARTIFACT_DIR,
    runtime: str | None = None,
    limit: int = 0,
) -> dict[str, Any]:
    classifier = Classifier(artifact_dir, runtime=runtime)  # type: ignore[arg-type]
    ham = validation_samples(data_dir, artifact_dir)
    phone = phone_validation_samples(phone_root, artifact_dir)
    if limit:  # a slice for quick checks
        ham, phone = _stratified_slice(ham, limit), _stratified_slice(phone, limit)
    ham_images = load_prepared_images(data_dir, ham)
    with np.load(artifact_dir / CLINICAL_CV_FILE) as cross_validation:
        by_id = dict(zip(cross_validation["ids"].tolist(), cross_validation["logits"], strict=True))
    phone_logits = np.stack([by_id[s.image_id] for s in phone])
    phone_labels = np.array([s.label for s in phone])
    runs = nested_runs(phone, phone_logits, 1 if limit else NESTED_REPEATS)
    phone_images = load_prepared([s.path for s in phone])
    kinds = {
        PhotoKind.DERMOSCOPIC: evaluate_kind(
            classifier,
            PhotoKind.DERMOSCOPIC,
            ham_images,
            np.array([s.label for s in ham]),
            [s.lesion_id for s in ham],
            classifier.logits(ham_images, PhotoKind.DERMOSCOPIC),
        ),
        PhotoKind.CLINICAL: evaluate_kind(
            classifier,
            PhotoKind.CLINICAL,
            phone_images,
            phone_labels,
            [s.patient_id for s in phone],
            phone_logits,
            (runs[0].photo_probabilities, runs[0].levels["photo_only"], runs[0].alerts["photo_only"]),
        ),
    }
    pictures = negative_pictures(seed=1, crops_per_photo=4, generated=limit // 4 if limit else 30)
    outcomes = gate_outcomes(classifier, np.stack([prepare_image(p.image) for p in pictures]))
    not_lesions: dict[str, Any] = refusal_summary(outcomes)
    not_lesions["refused_share_by_kind"] = {
        kind: float(
            np.mean(
                [o not in {*PhotoKind, UNCERTAIN} for o, p in zip(outcomes, pictures, strict=True) if p.kind == kind]
            )
        )
        for kind in sorted({p.kind for p in pictures})
    }
    not_lesions["note"] = (
        "pictures made with another seed than the picture head's (other crops, other generated pictures); "
        "their photo sources are the same, so training.picture_head_cross_validated_refusal in the artifact "
        "metadata (held out by source) is the honest figure"
    )
    report: dict[str, Any] = {
        "model_version": classifier.version,
        "runtime": classifier.runtime_name,
        "lesions_dermoscopic": len({s.lesion_id for s in ham}),
        "patients_clinical": len({s.patient_id for s in phone}),
        "kinds": {k.value: {key: v for key, v in r.items() if key != "_plot"} for k, r in kinds.items()},
        "not_lesions": not_lesions,
        "clinical_with_answers": answers_cross_validated(runs, phone_labels),
        "clinical_nested": nested_report(phone, runs, skin_tone_groups(phone_images)),
        "picture_head_cross_validated_refusal": classifier.metadata.training.get(
            "picture_head_cross_validated_refusal"
        ),
        "test_time_views": list(classifier.views),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    for kind, result in kinds.items():
        matrix = np.array(result["as_shipped"]["confusion_matrix"]["counts"])
        _plot_confusion_matrix(matrix, output_dir / f"confusion_matrix_{kind.value}.png", kind.value)
    _plot_reliability({k.value: r["_plot"] for k, r in kinds.items()}, output_dir / "reliability.png")
    return report


def _stratified_slice(samples: list[SampleT], limit: int) -> list[SampleT]:
    """About ``limit`` samples, every class kept with at least 8 (so that each half of a cross-fit has some)."""
    chosen: list[SampleT] = []
    for label in sorted({s.label for s in samples}):
        of_class = [s for s in samples if s.label == label]
        count = min(len(of_class), max(8, round(limit * len(of_class) / len(samples))))
        chosen += of_class[:: max(1, len(of_class) // count)][:count]
    return chosen


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _plot_confusion_matrix(matrix: np.ndarray, path: Path, kind: str) -> None:
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
    axes.set_ylabel("true (PAD-UFES-20's SCC counted as akiec)" if kind == "clinical" else "true")
    axes.set_title(f"Confusion matrix, {kind} photos (validation; row-normalised)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_reliability(
    by_kind: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path, bins: int = 15
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    for kind, (before, after, labels) in by_kind.items():
        for probabilities, name in ((before, "before"), (after, "after temperature")):
            points = [
                (c, a) for share, c, a in reliability_bins(probabilities, labels, bins) if share * len(labels) >= 5
            ]
            ece = expected_calibration_error(probabilities, labels, bins)
            axes.plot(
                [c for c, _ in points], [a for _, a in points], marker="o", label=f"{kind}, {name} (ECE {ece:.3f})"
            )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set_xlabel("confidence (top class probability)")
    axes.set_ylabel("accuracy")
    axes.set_title("Reliability per photo kind (validation)")
    axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "balanced_accuracy",
        "melanoma_sensitivity",
        "melanoma_specificity",
        "malignant_told_low",
        "benign_told_low",
        "ece",
    )
    return {
        "model_version": report["model_version"],
        **{
            kind: {
                "refused": result["gates"]["refused_share"],
                "as_shipped": {k: result["as_shipped"][k] for k in keys},
                "cross_fitted": {k: result["cross_fitted"][k] for k in keys},
            }
            for kind, result in report["kinds"].items()
        },
        "not_lesions_refused": report["not_lesions"]["refused_share"],
        "clinical_with_answers": {
            name: {k: report["clinical_with_answers"][name][k] for k in keys} for name in ("photo_only", "with_answers")
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--phone-data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--output", type=Path, default=Path("models/evaluation"))
    parser.add_argument("--runtime", choices=RUNTIMES, default=None)
    parser.add_argument("--limit", type=int, default=0, help="about this many photos of each kind (quick check)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    report = evaluate(
        data_dir, resolve_phone_data_root(args.phone_data_dir), args.output, args.artifact_dir, args.runtime, args.limit
    )
    print(json.dumps(summary(report), indent=2))


if __name__ == "__main__":
    main()
