"""Which photos measure the shipped model, as the artifact records them: HAM10000's validation split and the whole
phone photos in the order of their cross-validation logits (the files are written by models/training/package.py)."""

from __future__ import annotations

import json
from pathlib import Path

from models.serving.inference import ARTIFACT_DIR
from models.training.data import Sample, read_samples
from models.training.pad_ufes import PhoneSample, read_phone_samples

SPLIT_FILE = "validation_split.json"
CLINICAL_CV_FILE = "clinical_cross_validation.npz"  # each phone photo's logits from the run that held its patient out
TRIAGE_FILE = "triage.npz"


def validation_samples(data_dir: Path, artifact_dir: Path = ARTIFACT_DIR) -> list[Sample]:
    wanted = json.loads((artifact_dir / SPLIT_FILE).read_text())["validation"]
    by_id = {s.image_id: s for s in read_samples(data_dir)}
    return [by_id[image_id] for image_id in wanted]


def phone_validation_samples(phone_root: Path, artifact_dir: Path = ARTIFACT_DIR) -> list[PhoneSample]:
    """The whole phone photos, in the order of the artifact's cross-validation logits."""
    wanted = json.loads((artifact_dir / SPLIT_FILE).read_text())["phone_validation"]
    by_id = {s.image_id: s for s in read_phone_samples(phone_root, include_crops=False)}
    return [by_id[image_id] for image_id in wanted]
