"""The shipped artifact: loads, its version is the content hash in its metadata, files fit in git."""

from __future__ import annotations

from models.inference import ARTIFACT_DIR, Classifier, artifact_version, read_metadata
from models.preprocessing import INPUT_SIZE
from shared.labels import CLASS_CODES


def test_version_matches_the_content_hash() -> None:
    metadata = read_metadata()
    assert metadata["version"] == artifact_version(ARTIFACT_DIR, list(metadata["files"].values()))


def test_metadata_describes_the_model() -> None:
    metadata = read_metadata()
    assert metadata["class_codes"] == list(CLASS_CODES)
    assert len(metadata["class_names"]) == 7
    assert metadata["input_size"] == INPUT_SIZE
    assert "224x224" in metadata["preprocessing"]
    assert 0.05 < metadata["temperature"] < 20
    assert 0.0 < metadata["melanoma_alert_threshold"] < 1.0
    assert metadata["default_runtime"] in metadata["files"]
    assert len(metadata["training"]["data_fingerprint"]) == 64


def test_model_files_are_under_25_mb() -> None:
    for path in ARTIFACT_DIR.iterdir():
        assert path.stat().st_size < 25 * 1024 * 1024, path


def test_artifact_loads_and_reports_its_version(classifier: Classifier) -> None:
    assert classifier.version == read_metadata()["version"]
    assert classifier.runtime_name == read_metadata()["default_runtime"]


def test_test_time_views_are_orientation_changes_of_the_same_photo() -> None:
    import numpy as np

    from models.inference import VIEWS

    batch = np.random.default_rng(0).integers(0, 255, (2, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    for name, view in VIEWS.items():
        viewed = view(batch)
        assert viewed.shape == batch.shape, name
        assert np.array_equal(view(viewed), batch), f"{name} is its own inverse"
        assert np.array_equal(np.sort(viewed, axis=None), np.sort(batch, axis=None)), f"{name} only moves pixels"
    assert set(read_metadata()["test_time_views"]) <= set(VIEWS)


def test_serving_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, worker.tasks, bot.handlers, skinsense.cli\n"
        "from models.inference import Classifier\n"
        "import numpy as np\n"
        "Classifier().classify_prepared([np.zeros((224, 224, 3), np.uint8)])\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_model_card_reports_the_shipped_model_and_its_measured_figures() -> None:
    import json

    card = (ARTIFACT_DIR.parent / "MODEL_CARD.md").read_text()
    metrics = json.loads((ARTIFACT_DIR.parent / "evaluation" / "metrics.json").read_text())
    assert metrics["model_version"] == read_metadata()["version"], "models/evaluation is of another model"
    assert read_metadata()["version"] in card
    for key in (
        "balanced_accuracy",
        "melanoma_roc_auc",
        "melanoma_sensitivity",
        "melanoma_specificity",
        "ece_after_calibration",
    ):
        assert f"{metrics[key]:.3f}" in card, key
    for phrase in ("CC BY-NC 4.0", "Tschandl", "not a diagnosis", "Dermoscopic images only", "How to retrain"):
        assert phrase in card
