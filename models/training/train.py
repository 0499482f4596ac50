"""One training run of a SkinSense lesion network (``python -m models.training.train``; the shipped recipe of several
runs is models/training/recipe.py, ``skinsense train``).

The data a run sees (TrainConfig):
- HAM10000 (``use_ham``), split by lesion (stratified by class); its validation split never trains, and
  ``phone_style_probability`` of its images are made phone-like (``augment.phone_style``);
- PAD-UFES-20 (``phone_data_root``): with ``train_on_phone_photos`` the whole phone photos (``phone_repeat``
  times an epoch) and the lesion crops pasted on skin (``augment.on_skin``, ``crop_repeat`` times), except
  the patients of fold ``phone_fold`` of ``phone_folds`` (held out to measure on; 0 folds: every patient
  trains). Without it, only the crops of patients who have no whole photo here train, and all the photos
  measure the run (pad_ufes.phone_training_split).
  With ``phone_lesion_crop_probability``, that share of the whole photos' views is framed on the lesion
  first (models/training/framing.py); the held-out photos are always scored whole, as the server sees them.
The shipped phone network is a phone-only run (``use_ham`` False) on every patient, with five fold runs for
its figures; the shipped dermoscopy network, two HAM10000-only runs averaged.

A run starts from the ported ImageNet weights, or with ``init_from`` from another trained lesion network of
the same architecture (one member of an averaged one: ``init_member``; models/training/warm_start.py).
Class weights balance the classes over the epoch's mix. The head trains first on the frozen
backbone, then the whole network fine-tunes (batch normalisation stays frozen: its statistics are folded
into the ported weights). Augmentation is numpy and Pillow, so any Keras backend can run it.

The run directory receives the Keras model (logits), the config, the data fingerprint, the split, the
per-epoch history, and the held-out logits (HAM10000 validation; held-out phone photos), each averaged
over the four flips the server uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.serving.metrics import balanced_accuracy
from models.serving.preprocessing import INPUT_SIZE
from models.training.augment import augment, on_skin, phone_style
from models.training.data import (
    data_fingerprint,
    image_path,
    load_prepared,
    load_prepared_images,
    read_samples,
    split_by_lesion,
)
from models.training.framing import Box, lesion_box
from models.training.pad_ufes import PhoneSample, phone_training_split, read_phone_samples
from models.training.warm_start import file_digest, start_from
from shared.labels import CLASS_CODES

log = logging.getLogger(__name__)
TEST_TIME_FLIPS = 4


@dataclass
class TrainConfig:
    data_dir: str
    imagenet_weights: str
    run_dir: str
    phone_data_root: str = ""  # the folder holding pad_ufes/ and pad_ufes_lesion_crops/; empty: HAM10000 only
    crop_repeat: int = 2  # each lesion crop this many times per epoch (domain balance)
    use_ham: bool = True  # False: a phone-only network (PAD-UFES-20 alone)
    train_on_phone_photos: bool = False  # also train on the whole phone photos (see pad_ufes.phone_training_split)
    phone_repeat: int = 4  # each whole phone photo this many times per epoch
    # Share of the whole phone photos' training views framed on their lesion (models/training/framing.py) before
    # the random crop; 0: whole photos only, as the shipped networks (issue 19, item 4: lesion-centred crops).
    phone_lesion_crop_probability: float = 0.0
    phone_folds: int = 0  # with train_on_phone_photos: hold out fold ``phone_fold`` of this many patient folds
    phone_fold: int = 0
    seed: int = 20261125  # weights initialisation, shuffling, augmentation
    split_seed: int = 20261125  # the HAM10000 split and the phone folds; keep it fixed to compare runs
    validation_fraction: float = 0.2
    phone_style_probability: float = 0.5  # share of HAM10000 images made phone-like
    batch_size: int = 32
    head_epochs: int = 2
    head_learning_rate: float = 1e-3
    finetune_epochs: int = 10
    finetune_learning_rate: float = 3e-4
    dropout: float = 0.3
    # Inverse-frequency weights raised to this power: 1.0 is fully balanced, 0.0 ignores imbalance.
    class_weight_power: float = 1.0
    loader_threads: int = 4
    limit: int = 0  # use only the first N training images of each data set (smoke tests); 0: all
    # Start from this saved Keras lesion network's weights instead of ImageNet's (e.g. the artifact's
    # dermoscopic.keras); empty: the ImageNet port. ``init_member`` picks one network of an averaged one.
    init_from: str = ""
    init_member: int | None = None
    # The side of the square input the network trains and is measured on. The served networks take 224
    # (models/serving/preprocessing.INPUT_SIZE); a larger one is an experiment (issue 19: larger phone input).
    input_size: int = INPUT_SIZE


@dataclass(frozen=True)
class TrainingImage:
    source: int  # index into the loaded source images
    label: int
    kind: str  # "dermoscopic", "crop" or "phone"


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    counts = np.bincount(labels, minlength=len(CLASS_CODES)).astype(np.float64)
    present = counts > 0
    weights = np.zeros(len(counts))
    weights[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    weights /= (weights * counts).sum() / counts.sum()  # mean weight per sample stays 1
    return {i: float(w) for i, w in enumerate(weights)}


def build_classifier(imagenet_weights: Path, dropout: float, input_size: int = INPUT_SIZE) -> Any:
    """Ported ImageNet backbone and its pretrained 1024-wide pre-logits conv, then a new 7-class head."""
    import keras

    from models.training.port import load_imagenet_mobilenet_v3_small, pre_logits

    imagenet = load_imagenet_mobilenet_v3_small(imagenet_weights, input_size)
    embedding = pre_logits(imagenet)  # after conv_2 (1024) and hard-swish
    x = keras.layers.Flatten(name="features")(embedding)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(len(CLASS_CODES), name="lesion_logits")(x)
    model = keras.Model(imagenet.input, logits, name="skinsense_mobilenet_v3_small")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def set_backbone_trainable(model: Any, trainable: bool) -> None:
    import keras

    head = {"conv_2", "features", "head_dropout", "lesion_logits"}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        layer.trainable = trainable or layer.name in head


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def flip_averaged_logits(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits averaged over the server's four views (identity, left-right, up-down, 180 degrees)."""
    views = (images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1])
    return np.asarray(
        np.mean(
            [np.asarray(model.predict(np.ascontiguousarray(v, np.float32), batch_size, verbose=0)) for v in views],
            axis=0,
        )
    )


def training_batches(
    sources: list[Image.Image],
    items: list[TrainingImage],
    weights: dict[int, float],
    config: TrainConfig,
    lesion_boxes: dict[int, Box],
) -> Any:
    """A Keras PyDataset over the epoch's mix; every image gets fresh augmentation every epoch. ``lesion_boxes``
    (by source) frames a phone photo on its lesion with ``config.phone_lesion_crop_probability``."""
    import keras

    class TrainingBatches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(workers=config.loader_threads, use_multiprocessing=False)
            self.rng = np.random.default_rng(config.seed)
            self.order = self.rng.permutation(len(items))
            self.epoch = 0

        def __len__(self) -> int:
            return int(np.ceil(len(items) / config.batch_size))

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rng = np.random.default_rng([config.seed, self.epoch, index])
            chosen = self.order[index * config.batch_size : (index + 1) * config.batch_size]
            images, labels = [], []
            for item in (items[i] for i in chosen):
                source = sources[item.source]
                if item.kind == "dermoscopic" and rng.random() < config.phone_style_probability:
                    source = phone_style(source, rng)
                elif item.kind == "crop":
                    source = on_skin(source, rng)
                elif item.source in lesion_boxes and rng.random() < config.phone_lesion_crop_probability:
                    source = source.crop(tuple(round(edge) for edge in lesion_boxes[item.source]))
                images.append(augment(source, rng, config.input_size))
                labels.append(item.label)
            sample_weights = np.array([weights[label] for label in labels], np.float32)
            return np.stack(images).astype(np.float32), np.array(labels, np.int64), sample_weights

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = self.rng.permutation(len(items))

    return TrainingBatches()


def train(config: TrainConfig) -> Path:
    import keras

    keras.utils.set_random_seed(config.seed)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    data_dir = Path(config.data_dir)
    samples = read_samples(data_dir)
    train_samples, validation_samples = split_by_lesion(samples, config.validation_fraction, config.split_seed)
    if not config.use_ham:  # a phone-only network
        train_samples, validation_samples, samples = [], [], []
    if config.limit:  # every k-th image, so that every class stays in
        train_samples = train_samples[:: max(1, len(train_samples) // config.limit)]
        validation_samples = validation_samples[:: max(1, len(validation_samples) // config.limit)]
    phone: list[PhoneSample] = []
    held_out_phone: list[PhoneSample] = []
    if config.phone_data_root:
        phone, held_out_phone = phone_training_split(
            read_phone_samples(Path(config.phone_data_root)),
            config.train_on_phone_photos,
            config.phone_folds,
            config.phone_fold,
            config.split_seed,
        )
        if config.limit:
            phone = phone[:: max(1, len(phone) // config.limit)]
            held_out_phone = held_out_phone[:: max(1, len(held_out_phone) // config.limit)]

    with ThreadPoolExecutor(config.loader_threads) as pool:
        sources = list(pool.map(_load_rgb, [image_path(data_dir, s) for s in train_samples] + [s.path for s in phone]))
    validation_images = load_prepared_images(data_dir, validation_samples, config.loader_threads, config.input_size)
    held_out_images = load_prepared([s.path for s in held_out_phone], config.loader_threads, config.input_size)
    items = [TrainingImage(i, s.label, "dermoscopic") for i, s in enumerate(train_samples)]
    for offset, sample in enumerate(phone, start=len(train_samples)):
        if sample.is_crop:
            items += [TrainingImage(offset, sample.label, "crop")] * config.crop_repeat
        else:
            items += [TrainingImage(offset, sample.label, "phone")] * config.phone_repeat
    lesion_boxes = _phone_lesion_boxes(sources, items, config)
    labels = np.array([item.label for item in items])
    validation_labels = np.array([s.label for s in validation_samples], dtype=np.int64)
    held_out_labels = np.array([s.label for s in held_out_phone], dtype=np.int64)
    weights = class_weights(labels, config.class_weight_power)
    log.info(
        "loaded %d sources, %d training items per epoch in %.0f s", len(sources), len(items), time.time() - started
    )
    _write_json(
        run_dir / "train_config.json",
        {
            "config": dataclasses.asdict(config),
            "init_from_sha256": file_digest(Path(config.init_from)) if config.init_from else None,
            "data_fingerprint": data_fingerprint(data_dir, samples),
            "class_codes": list(CLASS_CODES),
            "class_weights": {CLASS_CODES[i]: w for i, w in weights.items()},
            "epoch_counts": _counts(labels),
            "validation_counts": _counts(validation_labels),
            "validation_lesions": len({s.lesion_id for s in validation_samples}),
            "phone_training_crops": sum(s.is_crop for s in phone),
            "phone_training_photos": sum(not s.is_crop for s in phone),
            "phone_held_out_images": len(held_out_phone),
            "phone_held_out_patients": len({s.patient_id for s in held_out_phone}),
            "phone_lesion_boxes": len(lesion_boxes),
        },
    )
    _write_json(
        run_dir / "split.json",
        {
            "train": [s.image_id for s in train_samples],
            "validation": [s.image_id for s in validation_samples],
            "phone_train": [s.image_id for s in phone],
            "phone_held_out": [s.image_id for s in held_out_phone],
        },
    )

    history: list[dict[str, Any]] = []

    class ValidationLog(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self, stage: str) -> None:
            super().__init__()
            self.stage = stage

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            entry: dict[str, Any] = {
                "stage": self.stage,
                "epoch": epoch + 1,
                "loss": float((logs or {}).get("loss", float("nan"))),
                "seconds": time.time() - started,
            }
            if len(validation_samples):
                logits = np.asarray(self.model.predict(validation_images.astype(np.float32), batch_size=64, verbose=0))
                entry["val_balanced_accuracy"] = balanced_accuracy(validation_labels, logits.argmax(1))
            if len(held_out_images):
                phone_logits = np.asarray(self.model.predict(held_out_images.astype(np.float32), verbose=0))
                entry["phone_balanced_accuracy"] = balanced_accuracy(held_out_labels, phone_logits.argmax(1))
            history.append(entry)
            log.info("%s", entry)
            _write_json(run_dir / "history.json", history)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = build_classifier(Path(config.imagenet_weights), config.dropout, config.input_size)
    if config.init_from:
        copied = start_from(model, Path(config.init_from), config.init_member)
        log.info("started from %s (member %s): %d layers' weights", config.init_from, config.init_member, copied)
    batches = training_batches(sources, items, weights, config, lesion_boxes)
    finetune_steps = config.finetune_epochs * len(batches)
    stages = (  # (name, backbone trainable, learning rate or schedule, epochs)
        ("head", False, config.head_learning_rate, config.head_epochs),
        (
            "finetune",
            True,
            keras.optimizers.schedules.CosineDecay(config.finetune_learning_rate, finetune_steps, alpha=0.01),
            config.finetune_epochs,
        ),
    )
    for stage, backbone_trainable, learning_rate, epochs in stages:
        set_backbone_trainable(model, backbone_trainable)
        model.compile(keras.optimizers.Adam(learning_rate), loss)
        model.fit(batches, epochs=epochs, callbacks=[ValidationLog(stage)], verbose=2)

    model.save(run_dir / "model.keras")
    held_out: dict[str, Any] = {}
    if len(validation_samples):
        held_out["validation_ids"] = np.array([s.image_id for s in validation_samples])
        held_out["validation_logits"] = flip_averaged_logits(model, validation_images)
    if len(held_out_images):
        held_out["phone_ids"] = np.array([s.image_id for s in held_out_phone])
        held_out["phone_logits"] = flip_averaged_logits(model, held_out_images)
    np.savez(run_dir / "held_out_logits.npz", **held_out)
    log.info("training finished in %.0f s; model at %s", time.time() - started, run_dir / "model.keras")
    return run_dir


def _phone_lesion_boxes(sources: list[Image.Image], items: list[TrainingImage], config: TrainConfig) -> dict[int, Box]:
    """Each whole phone photo's lesion-centred square, found once (by source; none where no spot is found)."""
    if not config.phone_lesion_crop_probability:
        return {}
    phone_sources = sorted({item.source for item in items if item.kind == "phone"})
    with ThreadPoolExecutor(config.loader_threads) as pool:
        boxes = dict(zip(phone_sources, pool.map(lambda i: lesion_box(sources[i]), phone_sources), strict=True))
    found = {source: box for source, box in boxes.items() if box is not None}
    log.info("lesion found in %d of %d phone photos", len(found), len(phone_sources))
    return found


def _counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(CLASS_CODES))
    return {code: int(n) for code, n in zip(CLASS_CODES, counts, strict=True)}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


_INT_FIELDS: tuple[str, ...] = (
    "seed",
    "split_seed",
    "crop_repeat",
    "phone_repeat",
    "phone_folds",
    "phone_fold",
    "batch_size",
)
_INT_FIELDS += ("head_epochs", "finetune_epochs", "loader_threads", "limit", "input_size")
_FLOAT_FIELDS: tuple[str, ...] = ("phone_style_probability", "head_learning_rate", "finetune_learning_rate", "dropout")
_FLOAT_FIELDS += ("class_weight_power", "phone_lesion_crop_probability")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(data_dir="", imagenet_weights="", run_dir="")
    parser.add_argument("--data-dir", help="HAM10000 folder (default: setting SKINSENSE_DATA_DIR)")
    parser.add_argument("--phone-data-dir", help="folder holding pad_ufes/ (default: the HAM10000 folder's parent)")
    parser.add_argument("--no-phone-data", action="store_true", help="train on HAM10000 alone")
    parser.add_argument("--phone-only", action="store_true", help="train on PAD-UFES-20 alone (no HAM10000)")
    parser.add_argument("--train-on-phone-photos", action="store_true", help="also train on the whole phone photos")
    parser.add_argument("--imagenet-weights", help="TFLite file (default: SKINSENSE_IMAGENET_WEIGHTS)")
    parser.add_argument("--run-dir", default="models/runs/latest")
    parser.add_argument(
        "--init-from", default="", help="start from this Keras lesion network (e.g. models/artifact/dermoscopic.keras)"
    )
    parser.add_argument("--init-member", type=int, default=None, help="with --init-from: which member (0-based)")
    for field in _INT_FIELDS:
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    for field in _FLOAT_FIELDS:
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=getattr(defaults, field))


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    from models.training.pad_ufes import resolve_phone_data_root
    from shared.config import get_settings

    settings = get_settings()
    data_dir = args.data_dir or settings.data_dir
    weights = args.imagenet_weights or settings.imagenet_weights
    if not data_dir or not weights:
        raise SystemExit(
            "set SKINSENSE_DATA_DIR and SKINSENSE_IMAGENET_WEIGHTS (or pass --data-dir, --imagenet-weights)"
        )
    phone_root = (
        "" if args.no_phone_data else str(resolve_phone_data_root(args.phone_data_dir or Path(data_dir).parent))
    )
    return TrainConfig(
        data_dir=str(data_dir),
        imagenet_weights=str(weights),
        run_dir=args.run_dir,
        phone_data_root=phone_root,
        use_ham=not args.phone_only,
        train_on_phone_photos=args.train_on_phone_photos,
        init_from=args.init_from,
        init_member=args.init_member,
        **{field: getattr(args, field) for field in _INT_FIELDS + _FLOAT_FIELDS},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(config_from_arguments(args))


if __name__ == "__main__":
    main()
