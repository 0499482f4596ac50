"""The shipped artifact: loads, its version is the content hash in its metadata, files fit in git."""

from __future__ import annotations

import json
from pathlib import Path

from models.serving.inference import ARTIFACT_DIR, Classifier, artifact_version, read_metadata
from models.serving.preprocessing import INPUT_SIZE
from shared.labels import CLASS_CODES, PhotoKind


def test_version_matches_the_content_hash() -> None:
    metadata = read_metadata()
    assert metadata.version == artifact_version(ARTIFACT_DIR, metadata.model_files())
    assert all((ARTIFACT_DIR / name).is_file() for name in metadata.model_files())


def test_metadata_describes_the_model_and_each_photo_kind() -> None:
    metadata = read_metadata()
    assert metadata.class_codes == list(CLASS_CODES)
    assert len(metadata.class_names) == 7
    assert metadata.input_size == INPUT_SIZE
    assert "224x224" in metadata.preprocessing
    assert set(metadata.kinds) == set(PhotoKind), "calibration and policy for every photo kind"
    for kind, settings in metadata.kinds.items():
        assert 0.05 < settings.temperature < 20, kind
        assert 0.0 < settings.melanoma_alert_threshold < 1.0, kind
        assert 0.0 < settings.low_risk_below < 0.5, kind
        assert settings.min_sharpness > 0, kind
        assert 0 <= settings.malignant_told_low_per_100 <= 100, kind
    assert metadata.default_runtime in metadata.features_files
    assert all(metadata.default_runtime in settings.network_files for settings in metadata.kinds.values())
    assert len(metadata.training["data_fingerprint"]) == 64
    assert 0.0 < metadata.gates.refusal_probability < 1.0


def test_model_files_are_under_25_mb() -> None:
    for path in ARTIFACT_DIR.iterdir():
        assert path.stat().st_size < 25 * 1024 * 1024, path


def test_artifact_loads_and_reports_its_version(classifier: Classifier) -> None:
    assert classifier.version == read_metadata().version
    assert classifier.runtime_name == read_metadata().default_runtime


def test_test_time_views_are_orientation_changes_of_the_same_photo() -> None:
    import numpy as np

    from models.serving.inference import VIEWS

    batch = np.random.default_rng(0).integers(0, 255, (2, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    for name, view in VIEWS.items():
        viewed = view(batch)
        assert viewed.shape == batch.shape, name
        assert np.array_equal(view(viewed), batch), f"{name} is its own inverse"
        assert np.array_equal(np.sort(viewed, axis=None), np.sort(batch, axis=None)), f"{name} only moves pixels"
    assert set(read_metadata().test_time_views) <= set(VIEWS)


def test_serving_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, worker.tasks, bot.handlers, skinsense.cli\n"
        "from models.serving.inference import Classifier\n"
        "from shared.labels import PhotoKind\n"
        "import numpy as np\n"
        "Classifier().classify_prepared([np.zeros((224, 224, 3), np.uint8)], [PhotoKind.CLINICAL])\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_model_card_reports_the_shipped_model_and_its_figures_per_photo_kind() -> None:
    card = (ARTIFACT_DIR.parent / "MODEL_CARD.md").read_text()
    metrics = json.loads((ARTIFACT_DIR.parent / "evaluation" / "metrics.json").read_text())
    assert metrics["model_version"] == read_metadata().version, "models/evaluation is of another model"
    assert read_metadata().version in card
    for kind in PhotoKind:
        for section in ("as_shipped", "cross_fitted"):
            figures = metrics["kinds"][kind.value][section]
            for key in ("balanced_accuracy", "malignant_told_low", "benign_told_low", "ece"):
                assert f"{figures[key]:.3f}" in card, (kind, section, key)
        assert f"{metrics['kinds'][kind.value]['gates']['refused_share']:.3f}" in card, kind
    served = metrics["clinical_with_answers"]["with_answers"]  # phone photos with the answers, as served
    for key in ("balanced_accuracy", "malignant_told_low", "benign_told_low", "melanoma_sensitivity"):
        assert f"{served[key]:.3f}" in card, key
    for phrase in ("CC BY-NC 4.0", "Tschandl", "PAD-UFES-20", "not a diagnosis", "phone photos", "How to retrain"):
        assert phrase in card


def test_the_shipped_dermoscopy_network_becomes_a_run_to_package_beside_a_new_phone_network(
    data_dir: Path, tmp_path: Path
) -> None:
    """``package --shipped-dermoscopic`` (and ``skinsense train --shipped-dermoscopic``): the run folder holds the
    shipped network and the split it was trained and measured on, so a retrained phone network is packaged
    without retraining dermoscopy."""
    from models.training.data import read_samples
    from models.training.package import shipped_dermoscopic_run
    from models.training.validation_data import SPLIT_FILE

    run = shipped_dermoscopic_run(ARTIFACT_DIR, data_dir, tmp_path / "dermoscopic")
    split = json.loads((run / "split.json").read_text())
    assert split["validation"] == json.loads((ARTIFACT_DIR / SPLIT_FILE).read_text())["validation"]
    by_id = {s.image_id: s for s in read_samples(data_dir)}
    assert set(split["train"]) | set(split["validation"]) == set(by_id)
    train_lesions = {by_id[i].lesion_id for i in split["train"]}
    assert not train_lesions & {by_id[i].lesion_id for i in split["validation"]}
    assert (run / "model.keras").read_bytes() == (ARTIFACT_DIR / "dermoscopic.keras").read_bytes()
    config = json.loads((run / "train_config.json").read_text())
    assert config["data_fingerprint"] == read_metadata().training["data_fingerprint"]
