"""Model data: phone photos are split by patient, augmentation keeps shapes, evaluation runs on a slice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.serving.inference import ARTIFACT_DIR, read_metadata
from models.serving.preprocessing import INPUT_SIZE
from models.training.augment import augment, on_skin, phone_style
from models.training.pad_ufes import PhoneSample, phone_training_split, split_phone_samples
from shared.labels import PhotoKind

RUNS_LONG = True  # tests/conftest.py: started first


def test_phone_photos_never_share_a_patient_with_what_trains(phone_samples: list[PhoneSample]) -> None:
    crops, photos = split_phone_samples(phone_samples)
    assert photos and crops
    assert not {s.patient_id for s in crops} & {s.patient_id for s in photos}
    for fold in range(5):
        train, held_out = phone_training_split(phone_samples, True, 5, fold, seed=1)
        assert held_out and not {s.patient_id for s in train} & {s.patient_id for s in held_out}
        assert all(not s.is_crop for s in held_out)


def test_augmentations_give_model_inputs_and_skin_instead_of_black(phone_samples: list[PhoneSample]) -> None:
    rng = np.random.default_rng(0)
    crop = Image.open(next(s.path for s in phone_samples if s.is_crop)).convert("RGB")
    composite = np.asarray(on_skin(crop, rng))
    corners = np.concatenate([composite[:8, :8].reshape(-1, 3), composite[-8:, -8:].reshape(-1, 3)])
    assert corners.mean() > 60, "the black background became skin"
    photo = Image.open(next(s.path for s in phone_samples if not s.is_crop)).convert("RGB")
    framed = phone_style(photo, rng, (3.0, 3.0))
    assert framed.size[0] > photo.size[0] * 0.6 * 2.9
    for image in (crop, photo, framed):
        view = augment(image, rng)
        assert view.shape == (INPUT_SIZE, INPUT_SIZE, 3) and view.dtype == np.uint8


@pytest.mark.training
def test_evaluation_reports_each_photo_kind_on_a_slice(data_dir: Path, phone_data_root: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "models.training.evaluate", "--limit", "40", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["model_version"] == read_metadata(ARTIFACT_DIR).version
    for kind in PhotoKind:
        result = report["kinds"][kind.value]
        assert 0.0 <= result["gates"]["refused_share"] <= 1.0
        for section in ("as_shipped", "cross_fitted"):
            for key in ("balanced_accuracy", "malignant_told_low", "benign_told_low", "ece"):
                assert key in result[section], (kind, section, key)
    assert report["not_lesions"]["refused_share"] > 0.5
    assert (tmp_path / "confusion_matrix_clinical.png").is_file() and (tmp_path / "reliability.png").is_file()


@pytest.mark.training
def test_a_phone_training_run_holds_its_patients_out_and_writes_their_logits(
    data_dir: Path, phone_data_root: Path, imagenet_weights: Path, tmp_path: Path
) -> None:
    """A tiny real run (a few images, one epoch per stage) of the phone recipe's fold runs."""
    run_dir = tmp_path / "run"
    arguments = ["--run-dir", str(run_dir), "--limit", "16", "--head-epochs", "1", "--finetune-epochs", "1"]
    arguments += ["--phone-only", "--train-on-phone-photos", "--phone-folds", "5", "--phone-fold", "2"]
    completed = subprocess.run(
        [sys.executable, "-m", "models.training.train", *arguments], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    split = json.loads((run_dir / "split.json").read_text())
    trained = {image_id.split("_")[1] for image_id in split["phone_train"]}
    held_out = {image_id.split("_")[1] for image_id in split["phone_held_out"]}
    assert held_out and not trained & held_out, "no patient both trains and measures"
    with np.load(run_dir / "held_out_logits.npz") as logits:
        assert logits["phone_logits"].shape == (len(split["phone_held_out"]), 7)
        assert list(logits["phone_ids"]) == split["phone_held_out"]
    history = json.loads((run_dir / "history.json").read_text())
    assert [entry["stage"] for entry in history] == ["head", "finetune"]
