"""PAD-UFES-20 as the project uses it: smartphone photos (``pad_ufes/``) and lesion-only crops
(``pad_ufes_lesion_crops/``) with the patients' answers, always split by patient across both folders.

SCC has no HAM10000 class: clinically it is a keratinocyte cancer on the actinic keratosis /
intraepithelial carcinoma spectrum, so it is trained and scored as ``akiec`` (malignant either way).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.answers import BodySite, PatientAnswers, Sex
from shared.labels import CLASS_CODES

PHOTOS_FOLDER = "pad_ufes"
CROPS_FOLDER = "pad_ufes_lesion_crops"
# The dataset's own diagnoses onto the HAM10000 codes.
DIAGNOSTIC_TO_CODE = {"ACK": "akiec", "SCC": "akiec", "BCC": "bcc", "SEK": "bkl", "NEV": "nv", "MEL": "mel"}
# The five HAM10000 classes phone photos have; df and vasc never occur in PAD-UFES-20.
SHARED_CODES: tuple[str, ...] = ("akiec", "bcc", "bkl", "mel", "nv")
ANSWER_COLUMNS = ("itch", "grew", "hurt", "changed", "bleed", "elevation")


@dataclass(frozen=True)
class PhoneSample:
    image_id: str
    patient_id: str
    lesion_id: str
    diagnostic: str  # PAD-UFES-20's own: ACK, BCC, MEL, NEV, SCC, SEK
    label: int  # index into CLASS_CODES
    path: Path
    is_crop: bool  # lesion-only crop on black (not what a patient sends)
    age: float | None = None
    sex: str | None = None
    region: str | None = None
    answers: dict[str, bool | None] = field(default_factory=dict)
    fitzpatrick: str | None = None  # Fitzpatrick skin type, "I" to "VI"; often not recorded


def _answer(value: str) -> bool | None:
    return {"True": True, "False": False}.get(value)


def _skin_type(value: str) -> str | None:
    """The recorded Fitzpatrick type ("2.0") as its roman numeral; None when blank."""
    return ("I", "II", "III", "IV", "V", "VI")[int(float(value)) - 1] if value else None


def read_phone_samples(data_root: Path, include_crops: bool = True) -> list[PhoneSample]:
    """Samples of both folders under ``data_root`` (the folder holding ``pad_ufes/``)."""
    samples: list[PhoneSample] = []
    folders = [(PHOTOS_FOLDER, False)] + ([(CROPS_FOLDER, True)] if include_crops else [])
    for folder, is_crop in folders:
        with (data_root / folder / "metadata.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                samples.append(
                    PhoneSample(
                        image_id=row["image_id"],
                        patient_id=row["patient_id"],
                        lesion_id=row["lesion_id"],
                        diagnostic=row["diagnostic"],
                        label=CLASS_CODES.index(DIAGNOSTIC_TO_CODE[row["diagnostic"]]),
                        path=data_root / folder / "images" / f"{row['image_id']}.jpg",
                        is_crop=is_crop,
                        age=float(row["age"]) if row["age"] else None,
                        sex=row["gender"].lower() or None,
                        region=row["region"] or None,
                        answers={column: _answer(row[column]) for column in ANSWER_COLUMNS},
                        fitzpatrick=_skin_type(row.get("fitzpatrick", "")),
                    )
                )
    return samples


def split_phone_samples(samples: list[PhoneSample]) -> tuple[list[PhoneSample], list[PhoneSample]]:
    """(lesion crops of patients without a whole photo here, the whole photos): no patient on both sides.

    The network trains on the first; the second measures it on phone photos of unseen patients.
    """
    photographed = {s.patient_id for s in samples if not s.is_crop}
    crops = [s for s in samples if s.is_crop and s.patient_id not in photographed]
    photos = [s for s in samples if not s.is_crop]
    return crops, photos


def phone_training_split(
    samples: list[PhoneSample], train_on_photos: bool, folds: int, fold: int, seed: int
) -> tuple[list[PhoneSample], list[PhoneSample]]:
    """(what trains, the whole phone photos held out to measure on); no patient on both sides.

    Without ``train_on_photos`` it is ``split_phone_samples``. With it, every photo and crop trains except
    those of the patients in ``fold`` of ``folds`` (grouped by patient); ``folds=0`` holds out nothing.
    """
    if not train_on_photos:
        return split_phone_samples(samples)
    if folds == 0:
        return list(samples), []
    fold_of = patient_folds(samples, folds, seed)
    train = [s for s, f in zip(samples, fold_of, strict=True) if f != fold]
    held_out = [s for s, f in zip(samples, fold_of, strict=True) if f == fold and not s.is_crop]
    return train, held_out


# PAD-UFES-20's body regions onto HAM10000's localization words (shared.answers.BodySite).
REGION_TO_SITE = {
    "FACE": "face", "NOSE": "face", "LIP": "face", "EAR": "ear", "SCALP": "scalp", "NECK": "neck",
    "CHEST": "chest", "BACK": "back", "ABDOMEN": "abdomen", "ARM": "upper extremity",
    "FOREARM": "upper extremity", "HAND": "hand", "THIGH": "lower extremity", "FOOT": "foot",
}  # fmt: skip


def patient_answers(sample: PhoneSample) -> PatientAnswers:
    """The sample's recorded answers in the questionnaire's terms (unrecorded: unknown)."""
    site = REGION_TO_SITE.get(sample.region or "")
    return PatientAnswers(
        age=round(sample.age) if sample.age is not None else None,
        sex=Sex(sample.sex) if sample.sex in ("male", "female") else None,
        body_site=BodySite(site) if site else None,
        grew=sample.answers.get("grew"),
        changed=sample.answers.get("changed"),
        bleeds=sample.answers.get("bleed"),
        itches=sample.answers.get("itch"),
        hurts=sample.answers.get("hurt"),
        raised=sample.answers.get("elevation"),
    )


def resolve_phone_data_root(explicit: Path | None) -> Path:
    """The folder holding ``pad_ufes/``: the value given, else the HAM10000 folder's parent (SKINSENSE_DATA_DIR)."""
    from models.training.data import resolve_data_dir

    root = explicit or resolve_data_dir(None).parent
    if not (root / PHOTOS_FOLDER / "metadata.csv").is_file():
        raise SystemExit(f"no {PHOTOS_FOLDER}/metadata.csv under {root}: pass --phone-data-dir")
    return root


def patient_folds(samples: list[PhoneSample], folds: int, seed: int) -> np.ndarray:
    """Fold index of each sample, grouped by patient and stratified by class (no patient in two folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.zeros(len(samples), dtype=np.int64)
    labels = [s.label for s in samples]
    groups = [s.patient_id for s in samples]
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(samples)), labels, groups)):
        fold_of[held_out] = fold
    return fold_of
