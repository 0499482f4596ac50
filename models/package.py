"""Turn a training run into the shipped artifact under models/artifact/.

Writes the Keras model (logits, no optimizer state), its LiteRT (TFLite fp32) conversion, and one
metadata file: class order and names, input size, preprocessing, the temperature fitted on the
validation split, the melanoma alert threshold chosen there, the default runtime and the version
(content hash of the model files). The validation image ids travel with it so evaluation is
reproducible without the run directory.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import fit_temperature
from models.data import Sample, labels_of, load_prepared_images, read_samples, resolve_data_dir
from models.inference import ARTIFACT_DIR, METADATA_FILE, VIEWS, Classifier, artifact_version
from models.metrics import softmax
from models.policy import (
    HIGH_MALIGNANT_PROBABILITY,
    MEDIUM_MALIGNANT_PROBABILITY,
    TARGET_MELANOMA_SENSITIVITY,
    choose_melanoma_threshold,
)
from models.preprocessing import INPUT_SIZE, PREPROCESSING_DESCRIPTION
from shared.labels import CLASS_CODES, CLASS_NAMES, MELANOMA_INDEX

log = logging.getLogger(__name__)
KERAS_FILE = "model.keras"
LITERT_FILE = "model.tflite"
SPLIT_FILE = "validation_split.json"
# Logits averaged over these views of each photo (see models.inference.VIEWS).
DEFAULT_VIEWS = ("identity", "flip_left_right", "flip_up_down", "rotate_180")


def export_models(keras_model_paths: Sequence[Path], artifact_dir: Path) -> None:
    """Save the model (several runs become one model averaging their logits) for both runtimes."""
    import keras
    import tensorflow as tf

    members = [keras.saving.load_model(path, compile=False) for path in keras_model_paths]
    if len(members) == 1:
        model = members[0]
    else:
        image = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
        logits = [keras.Model(m.inputs, m.outputs[0], name=f"member_{i}")(image) for i, m in enumerate(members)]
        model = keras.Model(image, keras.layers.Average(name="mean_logits")(logits), name="skinsense_ensemble")
    model.save(artifact_dir / KERAS_FILE)

    # Batch 1: the workers classify one photo per invoke; a fixed shape lets XNNPACK plan once.
    signature = [tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")]
    model.export(str(artifact_dir / LITERT_FILE), format="litert", input_signature=signature, verbose=False)


def validation_samples(data_dir: Path, artifact_dir: Path) -> list[Sample]:
    wanted = json.loads((artifact_dir / SPLIT_FILE).read_text())["validation"]
    by_id = {s.image_id: s for s in read_samples(data_dir)}
    return [by_id[image_id] for image_id in wanted]


def validation_logits(classifier: Classifier, data_dir: Path, artifact_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    samples = validation_samples(data_dir, artifact_dir)
    images = load_prepared_images(data_dir, samples)
    return classifier.logits(images), labels_of(samples)


def package(
    run_dirs: Sequence[Path],
    data_dir: Path,
    artifact_dir: Path = ARTIFACT_DIR,
    default_runtime: str = "litert",
    views: Sequence[str] = DEFAULT_VIEWS,
) -> None:
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run_configs = [json.loads((run_dir / "train_config.json").read_text()) for run_dir in run_dirs]
    splits = [json.loads((run_dir / "split.json").read_text())["validation"] for run_dir in run_dirs]
    if any(split != splits[0] for split in splits):
        raise SystemExit("the runs were validated on different splits: an ensemble of them has no honest validation")
    (artifact_dir / SPLIT_FILE).write_text(json.dumps({"validation": splits[0]}) + "\n")
    export_models([run_dir / "model.keras" for run_dir in run_dirs], artifact_dir)
    model_files = {"litert": LITERT_FILE, "keras": KERAS_FILE}
    metadata: dict[str, Any] = {
        "version": artifact_version(artifact_dir, list(model_files.values())),
        "architecture": "MobileNetV3-Small 1.0 (ImageNet start), 7-class head; outputs logits"
        + (f" averaged over {len(run_dirs)} training runs" if len(run_dirs) > 1 else ""),
        "class_codes": list(CLASS_CODES),
        "class_names": [CLASS_NAMES[c] for c in CLASS_CODES],
        "input_size": INPUT_SIZE,
        "preprocessing": PREPROCESSING_DESCRIPTION,
        "files": model_files,
        "default_runtime": default_runtime,
        "test_time_views": list(views),
        "temperature": 1.0,
        "melanoma_alert_threshold": 0.5,
        "risk_policy": {
            "high_malignant_probability": HIGH_MALIGNANT_PROBABILITY,
            "medium_malignant_probability": MEDIUM_MALIGNANT_PROBABILITY,
            "target_melanoma_sensitivity": TARGET_MELANOMA_SENSITIVITY,
        },
        "training": {
            "runs": [c["config"] for c in run_configs],
            "data_fingerprint": run_configs[0]["data_fingerprint"],
            "class_weights": run_configs[0]["class_weights"],
        },
    }
    _write_metadata(artifact_dir, metadata)
    # Calibrate through the serving runtime itself, on the validation split.
    classifier = Classifier(artifact_dir, runtime=default_runtime)  # type: ignore[arg-type]
    logits, labels = validation_logits(classifier, data_dir, artifact_dir)
    temperature = fit_temperature(logits, labels)
    probabilities = softmax(logits, temperature)
    threshold = choose_melanoma_threshold(probabilities[:, MELANOMA_INDEX], labels == MELANOMA_INDEX)
    metadata["temperature"] = round(temperature, 6)
    metadata["melanoma_alert_threshold"] = round(threshold, 6)
    _write_metadata(artifact_dir, metadata)
    log.info(
        "artifact %s: temperature %.3f, melanoma alert threshold %.4f", metadata["version"], temperature, threshold
    )


def _write_metadata(artifact_dir: Path, metadata: dict[str, Any]) -> None:
    (artifact_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--run-dir",
        type=Path,
        nargs="+",
        default=[Path("models/runs/latest")],
        help="one run, or several: shipped as one model averaging their logits",
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--views", nargs="+", choices=sorted(VIEWS), default=list(DEFAULT_VIEWS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    package(args.run_dir, data_dir, args.artifact_dir, views=args.views)


if __name__ == "__main__":
    main()
