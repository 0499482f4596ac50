"""HAM10000 as the project uses it: metadata, the split by lesion, prepared images, a data fingerprint."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.serving.preprocessing import INPUT_SIZE, prepare_image
from shared.labels import CLASS_CODES


@dataclass(frozen=True)
class Sample:
    image_id: str
    lesion_id: str
    label: int  # index into CLASS_CODES


def resolve_data_dir(explicit: Path | None) -> Path:
    """The HAM10000 folder: the command-line value, else the SKINSENSE_DATA_DIR setting."""
    from shared.config import get_settings

    data_dir = explicit or get_settings().data_dir
    if data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR or pass --data-dir")
    return data_dir


def read_samples(data_dir: Path) -> list[Sample]:
    with (data_dir / "metadata.csv").open(newline="") as handle:
        return [
            Sample(row["image_id"], row["lesion_id"], CLASS_CODES.index(row["dx"])) for row in csv.DictReader(handle)
        ]


def image_path(data_dir: Path, sample: Sample) -> Path:
    return data_dir / "images" / f"{sample.image_id}.jpg"


def split_by_lesion(samples: list[Sample], validation_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Train/validation split, grouped by lesion_id (no lesion on both sides), stratified by class."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = round(1 / validation_fraction)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    labels = [s.label for s in samples]
    groups = [s.lesion_id for s in samples]
    train_index, validation_index = next(folds.split(np.zeros(len(samples)), labels, groups))
    train = [samples[i] for i in train_index]
    validation = [samples[i] for i in validation_index]
    assert not {s.lesion_id for s in train} & {s.lesion_id for s in validation}
    return train, validation


def load_prepared(paths: Sequence[Path], workers: int = 4, size: int = INPUT_SIZE) -> np.ndarray:
    """The model inputs of image files as one uint8 array (N, size, size, 3), via the shared prepare_image."""

    def load(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return prepare_image(image, size)

    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(load, paths))
    return np.stack(prepared) if prepared else np.zeros((0, size, size, 3), np.uint8)


def load_prepared_images(data_dir: Path, samples: list[Sample], workers: int = 4, size: int = INPUT_SIZE) -> np.ndarray:
    """All samples' model inputs (see load_prepared)."""
    return load_prepared([image_path(data_dir, sample) for sample in samples], workers, size)


def data_fingerprint(data_dir: Path, samples: list[Sample]) -> str:
    """SHA-256 over the metadata file and every image's bytes, in metadata order."""
    digest = hashlib.sha256((data_dir / "metadata.csv").read_bytes())
    for sample in samples:
        digest.update(image_path(data_dir, sample).read_bytes())
    return digest.hexdigest()
