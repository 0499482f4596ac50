"""Turn training runs into the shipped artifact under models/artifact/ (``python -m models.training.package``).

Writes, for both runtimes (Keras and LiteRT fp32):
- ``dermoscopic``: the dermoscopy network (a HAM10000 run; logits over the 7 classes);
- ``clinical``: the phone-photo network (a PAD-UFES-20 run trained on every phone patient);
- ``features``: the frozen ImageNet MobileNetV3-Small cut at its 1024-wide embedding;
and ``heads.npz`` (the picture head, fitted here), and ``metadata.json``: per photo kind the temperature,
the melanoma alert threshold and the LOW-risk threshold, fitted here on that kind's validation logits
(HAM10000's validation split through the served dermoscopy network; for phone photos, the out-of-fold
logits of the patient-grouped cross-validation runs, since the shipped phone network has seen every
phone patient), the gates' thresholds, and the version (content hash of the model files). The
validation ids and the phone cross-validation logits travel with it so evaluation is reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from models.serving.explanation_head import EXPLANATION_FILE
from models.serving.inference import (
    ARTIFACT_DIR,
    METADATA_FILE,
    PHONE_HEAD,
    PICTURE_CLASSES,
    PICTURE_HEAD,
    VIEWS,
    ArtifactMetadata,
    GateSettings,
    KindSettings,
    LiteRTNetwork,
    artifact_version,
    blend_logits,
)
from models.serving.policy import HIGH_MALIGNANT_PROBABILITY, MAX_MALIGNANT_TOLD_LOW, MELANOMA_SENSITIVITY
from models.serving.preprocessing import INPUT_SIZE, PREPROCESSING_DESCRIPTION, to_model_input
from models.serving.quality import MAX_BRIGHTNESS, MAX_SATURATED_SHARE, MIN_BRIGHTNESS, measure_quality
from models.training.data import (
    load_prepared,
    load_prepared_images,
    read_samples,
    resolve_data_dir,
    split_by_lesion,
)
from models.training.export import explainable_network, export_network
from models.training.kind_fit import cross_fitted_probabilities, fit_kind, malignant_told_low_share
from models.training.operating_point import fit_answers, phone_kind_settings, phone_operating_point
from models.training.pad_ufes import (
    PhoneSample,
    patient_folds,
    read_phone_samples,
    resolve_phone_data_root,
)
from models.training.picture_training import (
    CLINICAL_SHARE_UNDER,
    DERMOSCOPIC_SHARE_AT_LEAST,
    REFUSAL_PROBABILITY,
    build_picture_examples,
    cross_validated_probabilities,
    fit_embedding_head,
    fit_picture_head,
    refused,
)
from models.training.validation_data import (
    CLINICAL_CV_FILE,
    SPLIT_FILE,
    TRIAGE_FILE,
    validation_samples,
)
from shared.labels import CLASS_CODES, CLASS_NAMES, PhotoKind

log = logging.getLogger(__name__)
FILES = {
    "dermoscopic": {"litert": "dermoscopic.tflite", "keras": "dermoscopic.keras"},
    "clinical": {"litert": "clinical.tflite", "keras": "clinical.keras"},
    "features": {"litert": "features.tflite", "keras": "features.keras"},
}
HEADS_FILE = "heads.npz"
SHIPPED_DERMOSCOPIC_RUN = Path("models/runs/shipped_dermoscopic")  # where --shipped-dermoscopic writes it (git-ignored)
PHONE_FOLDS = 5
PHONE_HEAD_C = 0.003  # inverse L2 strength of the phone head (grouped cross-validation, see the model card)
# Logits averaged over these views of each photo (see models.serving.inference.VIEWS).
DEFAULT_VIEWS = ("identity", "flip_left_right", "flip_up_down", "rotate_180")
# The sharpness floor of a kind: this share of its validation photos is sharper than it.
SHARP_SHARE = 0.99


def average_models(paths: Sequence[Path]) -> Any:
    """One Keras model averaging the logits of several trained runs."""
    import keras

    members = [keras.saving.load_model(path, compile=False) for path in paths]
    image = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    logits = [keras.Model(m.inputs, m.outputs[0], name=f"member_{i}")(image) for i, m in enumerate(members)]
    return keras.Model(image, keras.layers.Average(name="mean_logits")(logits), name="skinsense_ensemble")


def shipped_dermoscopic_run(artifact_dir: Path, data_dir: Path, target: Path) -> Path:
    """The shipped dermoscopy network as a finished run folder (model.keras, split.json, train_config.json), so that
    a new phone network is packaged beside it without the 80 minutes of retraining it: its HAM10000 split is
    recomputed from the recorded seed and checked against the artifact's validation ids."""
    import shutil

    metadata = json.loads((artifact_dir / METADATA_FILE).read_text())
    configs = metadata["training"]["runs"]["dermoscopic"]
    first = configs[0] if isinstance(configs, list) else configs
    train, validation = split_by_lesion(
        read_samples(data_dir), first["validation_fraction"], first.get("split_seed") or first["seed"]
    )
    shipped_validation = json.loads((artifact_dir / SPLIT_FILE).read_text())["validation"]
    if [s.image_id for s in validation] != shipped_validation:
        raise SystemExit(f"{data_dir}: the recomputed HAM10000 split is not the shipped one (other data?)")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact_dir / FILES["dermoscopic"]["keras"], target / "model.keras")
    split = {"train": [s.image_id for s in train], "validation": shipped_validation}
    (target / "split.json").write_text(json.dumps(split) + "\n")
    config = {"config": configs, "data_fingerprint": metadata["training"]["data_fingerprint"]}
    (target / "train_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return target


def averaged_logits(network: LiteRTNetwork, prepared: np.ndarray, views: Sequence[str]) -> np.ndarray:
    batch = to_model_input(prepared)
    return np.asarray(np.mean([network.run(VIEWS[name](batch)) for name in views], axis=0))


def cross_validation_logits(cv_runs: Sequence[Path], phone: list[PhoneSample]) -> np.ndarray:
    """Each phone photo's logits from the cross-validation run that held its patient out."""
    by_id: dict[str, np.ndarray] = {}
    for run in cv_runs:
        with np.load(run / "held_out_logits.npz") as held_out:
            by_id.update(zip(held_out["phone_ids"].tolist(), held_out["phone_logits"], strict=True))
    missing = [s.image_id for s in phone if s.image_id not in by_id]
    if missing:
        raise SystemExit(f"{len(missing)} phone photos have no cross-validation logits (e.g. {missing[0]})")
    return np.stack([by_id[s.image_id] for s in phone])


def phone_head_out_of_fold(phone: list[PhoneSample], embeddings: np.ndarray) -> np.ndarray:
    """Each phone photo's probabilities from the phone head (on its ImageNet ``embeddings``) fitted on the other
    patient folds (``patient_folds``, seed 0): the phone head's half of the shipped out-of-fold blend."""
    labels = np.array([s.label for s in phone])
    head_fold = patient_folds(phone, PHONE_FOLDS, seed=0)
    out_of_fold = np.zeros((len(phone), len(CLASS_CODES)))
    for fold in range(PHONE_FOLDS):
        fit, held = head_fold != fold, head_fold == fold
        fitted = fit_embedding_head(embeddings[fit], labels[fit], len(CLASS_CODES), PHONE_HEAD_C)
        out_of_fold[held] = fitted.probabilities(embeddings[held])
    return out_of_fold


def package(
    dermoscopic_run: Path,
    clinical_run: Path,
    clinical_cv_runs: Sequence[Path],
    data_dir: Path,
    phone_root: Path,
    imagenet_weights: Path,
    artifact_dir: Path = ARTIFACT_DIR,
) -> ArtifactMetadata:
    import keras

    from models.training.features import build_feature_model

    artifact_dir.mkdir(parents=True, exist_ok=True)
    split = json.loads((dermoscopic_run / "split.json").read_text())
    phone = read_phone_samples(phone_root, include_crops=False)
    (artifact_dir / SPLIT_FILE).write_text(
        json.dumps({"validation": split["validation"], "phone_validation": [s.image_id for s in phone]}) + "\n"
    )
    explanation: dict[str, np.ndarray] = {}
    for kind, run in (("dermoscopic", dermoscopic_run), ("clinical", clinical_run)):
        # Served with its last feature map beside the logits, for the explanation picture (models/training/export.py).
        network, head = explainable_network(keras.saving.load_model(run / "model.keras", compile=False))
        export_network(network, artifact_dir, FILES[kind])
        explanation.update(head.arrays(kind))
    np.savez(artifact_dir / EXPLANATION_FILE, **explanation)  # type: ignore[arg-type]
    export_network(build_feature_model(imagenet_weights), artifact_dir, FILES["features"])
    dermoscopic = LiteRTNetwork(artifact_dir / FILES["dermoscopic"]["litert"], threads=2)
    features = LiteRTNetwork(artifact_dir / FILES["features"]["litert"], threads=2)

    # The picture head, with grouped cross-validated refusal rates for the record.
    by_id = {s.image_id: s for s in read_samples(data_dir)}
    ham_train = [by_id[i] for i in split["train"]]
    ham_validation = validation_samples(data_dir, artifact_dir)
    examples = build_picture_examples(lambda batch: features.run(to_model_input(batch)), data_dir, ham_train, phone)
    embeddings, targets, groups, sources = examples.arrays()
    out_of_fold = cross_validated_probabilities(embeddings, targets, groups)
    picture_head = fit_picture_head(embeddings, targets)
    oof_refused = refused(out_of_fold)
    gate_figures = {str(source): float(oof_refused[sources == source].mean()) for source in sorted(set(sources))}
    clinical_rows = sources == "pad"
    gate_figures["pad_chosen_as_clinical"] = float(
        (out_of_fold[clinical_rows, 1] > out_of_fold[clinical_rows, 0]).mean()
    )
    log.info("picture head, cross-validated: %s", gate_figures)

    # Per kind: calibration and policy on that kind's validation logits.
    ham_images = load_prepared_images(data_dir, ham_validation)
    phone_images = load_prepared([s.path for s in phone])
    # Phone photos: the phone network's out-of-fold logits blended with the phone head's out-of-fold
    # probabilities (each fitted without the photo's patient), then the shipped head on every patient.
    phone_labels = np.array([s.label for s in phone])
    phone_embeddings = features.run(to_model_input(phone_images))
    head_out_of_fold = phone_head_out_of_fold(phone, phone_embeddings)
    phone_head = fit_embedding_head(phone_embeddings, phone_labels, len(CLASS_CODES), PHONE_HEAD_C)
    heads = {**picture_head.arrays(PICTURE_HEAD), **phone_head.arrays(PHONE_HEAD)}
    np.savez(artifact_dir / HEADS_FILE, **cast(dict[str, Any], heads))
    phone_logits = blend_logits(cross_validation_logits(clinical_cv_runs, phone), head_out_of_fold)
    np.savez(artifact_dir / CLINICAL_CV_FILE, ids=np.array([s.image_id for s in phone]), logits=phone_logits)
    kind_data = {
        PhotoKind.DERMOSCOPIC: (
            averaged_logits(dermoscopic, ham_images, DEFAULT_VIEWS),
            ham_images,
            np.array([s.label for s in ham_validation]),
            [s.lesion_id for s in ham_validation],
        ),
        PhotoKind.CLINICAL: (
            phone_logits,
            phone_images,
            np.array([s.label for s in phone]),
            [s.patient_id for s in phone],
        ),
    }
    kinds: dict[PhotoKind, KindSettings] = {}
    phone_report: dict[str, Any] = {}
    for kind, (logits, images, labels, kind_groups) in kind_data.items():
        sharpness = np.array([measure_quality(image).sharpness for image in images])
        min_sharpness = round(float(np.quantile(sharpness, 1 - SHARP_SHARE)), 3)
        if kind == PhotoKind.CLINICAL:  # chosen by nested, patient-grouped cross-validation
            phone_report = phone_operating_point(phone, logits, repeats=1)
            kinds[kind] = KindSettings(
                network_files=FILES[kind.value],  # type: ignore[arg-type]
                min_sharpness=min_sharpness,
                **phone_kind_settings(phone_report),
            )
        else:
            fit = fit_kind(logits, labels, kind)
            _, levels, _ = cross_fitted_probabilities(logits, labels, kind_groups, kind)
            kinds[kind] = KindSettings(
                network_files=FILES[kind.value],  # type: ignore[arg-type]
                temperature=round(fit.temperature, 6),
                melanoma_alert_threshold=round(fit.policy.melanoma_alert_threshold, 6),
                low_risk_below=round(fit.policy.low_risk_below, 6),
                min_sharpness=min_sharpness,
                malignant_told_low_per_100=round(100 * malignant_told_low_share(levels, labels), 1),
            )
        log.info("%s: %s", kind.value, kinds[kind])

    # The answers' model, fitted on every phone photo's out-of-fold probabilities and recorded answers.
    fit_answers(phone, phone_logits, kinds[PhotoKind.CLINICAL].temperature).save(artifact_dir / TRIAGE_FILE)

    model_files = sorted(
        {name for files in FILES.values() for name in files.values()} | {HEADS_FILE, TRIAGE_FILE, EXPLANATION_FILE}
    )
    runs = {
        kind: json.loads((run / "train_config.json").read_text())
        for kind, run in (("dermoscopic", dermoscopic_run), ("clinical", clinical_run))
    }
    metadata = ArtifactMetadata(
        version=artifact_version(artifact_dir, model_files),
        architecture=(
            "per photo kind a MobileNetV3-Small 1.0 (ImageNet start) fine-tuned for that kind, 7-class logits "
            "(dermoscopic: HAM10000, two runs averaged; clinical: PAD-UFES-20 phone photos and lesion crops, "
            "blended with a logistic-regression phone head on the ImageNet embedding); features: the frozen "
            "ImageNet MobileNetV3-Small's 1024-wide embedding with a logistic-regression picture head"
        ),
        class_codes=list(CLASS_CODES),
        class_names=[CLASS_NAMES[c] for c in CLASS_CODES],
        input_size=INPUT_SIZE,
        preprocessing=PREPROCESSING_DESCRIPTION,
        features_files=FILES["features"],  # type: ignore[arg-type]
        heads_file=HEADS_FILE,
        triage_file=TRIAGE_FILE,
        explanation_file=EXPLANATION_FILE,
        default_runtime="litert",
        test_time_views=list(DEFAULT_VIEWS),
        kinds=kinds,
        gates=GateSettings(
            min_brightness=MIN_BRIGHTNESS,
            max_brightness=MAX_BRIGHTNESS,
            max_saturated_share=MAX_SATURATED_SHARE,
            refusal_probability=REFUSAL_PROBABILITY,
            clinical_share_under=CLINICAL_SHARE_UNDER,
            dermoscopic_share_at_least=DERMOSCOPIC_SHARE_AT_LEAST,
        ),
        picture_classes=list(PICTURE_CLASSES),
        training={
            "runs": {kind: run["config"] for kind, run in runs.items()},
            "data_fingerprint": runs["dermoscopic"]["data_fingerprint"],
            "clinical_data_fingerprint": runs["clinical"].get("data_fingerprint"),
            "clinical_cross_validation_runs": [str(run) for run in clinical_cv_runs],
            "risk_policy": {
                "high_malignant_probability": HIGH_MALIGNANT_PROBABILITY,
                "max_malignant_told_low": {k.value: v for k, v in MAX_MALIGNANT_TOLD_LOW.items()},
                "melanoma_sensitivity": {k.value: v for k, v in MELANOMA_SENSITIVITY.items()},
                "phone_operating_point": phone_report["shipped"],
            },
            "picture_head_cross_validated_refusal": gate_figures,
        },
    )
    (artifact_dir / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")
    log.info("artifact %s written to %s", metadata.version, artifact_dir)
    return metadata


def main(argv: list[str] | None = None) -> None:
    from shared.config import get_settings

    parser = argparse.ArgumentParser(description=__doc__)
    dermoscopy = parser.add_mutually_exclusive_group()
    dermoscopy.add_argument("--dermoscopic-run", type=Path, default=Path("models/runs/dermoscopic"))
    dermoscopy.add_argument(
        "--shipped-dermoscopic",
        action="store_true",
        help="package the shipped dermoscopy network (written as a run to models/runs/shipped_dermoscopic)",
    )
    parser.add_argument("--clinical-run", type=Path, default=Path("models/runs/clinical"))
    parser.add_argument(
        "--clinical-cv-runs", type=Path, nargs="+", default=[Path(f"models/runs/clinical_fold{k}") for k in range(5)]
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--phone-data-dir", type=Path, default=None)
    parser.add_argument("--imagenet-weights", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    weights = args.imagenet_weights or get_settings().imagenet_weights
    if weights is None:
        raise SystemExit("set SKINSENSE_IMAGENET_WEIGHTS or pass --imagenet-weights")
    dermoscopic_run = (
        shipped_dermoscopic_run(ARTIFACT_DIR, data_dir, SHIPPED_DERMOSCOPIC_RUN)
        if args.shipped_dermoscopic
        else args.dermoscopic_run
    )
    package(
        dermoscopic_run,
        args.clinical_run,
        args.clinical_cv_runs,
        data_dir,
        resolve_phone_data_root(args.phone_data_dir),
        weights,
        args.artifact_dir,
    )


if __name__ == "__main__":
    main()
