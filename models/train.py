"""Reproducible training of the SkinSense lesion classifier (``skinsense train`` / ``python -m models.train``).

Steps: split HAM10000 by lesion (stratified by class), port the ImageNet MobileNetV3-Small weights,
train the new 7-class head on the frozen backbone, then fine-tune the whole network (batch
normalisation stays frozen: its statistics are folded into the ported weights). Class imbalance is
handled with inverse-frequency class weights. The run directory receives the Keras model (which
outputs logits), the config, the data fingerprint, the split and the per-epoch history.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import (
    Sample,
    data_fingerprint,
    labels_of,
    load_prepared_images,
    read_samples,
    split_by_lesion,
)
from models.metrics import balanced_accuracy
from models.preprocessing import INPUT_SIZE
from shared.labels import CLASS_CODES

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data_dir: str
    imagenet_weights: str
    run_dir: str
    seed: int = 20261125  # weights initialisation, shuffling, augmentation
    split_seed: int = 20261125  # the train/validation split; keep it fixed to compare or ensemble runs
    validation_fraction: float = 0.2
    batch_size: int = 32
    head_epochs: int = 2
    head_learning_rate: float = 1e-3
    finetune_epochs: int = 18
    finetune_learning_rate: float = 3e-4
    dropout: float = 0.3
    # Inverse-frequency weights raised to this power: 1.0 is fully balanced, 0.0 ignores imbalance.
    class_weight_power: float = 1.0


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    counts = np.bincount(labels, minlength=len(CLASS_CODES)).astype(np.float64)
    weights = (counts.sum() / (len(counts) * counts)) ** power
    weights /= (weights * counts).sum() / counts.sum()  # mean weight per sample stays 1
    return {i: float(w) for i, w in enumerate(weights)}


def augment(image: Any, seed: Any) -> Any:
    """Dermoscopy-suited augmentation on a uint8 (224, 224, 3) tensor; returns float32 in [0, 255].

    Lesions have no canonical orientation, so all flips and right-angle rotations are fair; crops
    emulate framing; mild colour jitter emulates differences between dermatoscopes and lighting.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=8)
    x = tf.image.convert_image_dtype(image, tf.float32)
    x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    x = tf.image.stateless_random_flip_up_down(x, seeds[1])
    k = tf.random.stateless_uniform([], seeds[2], minval=0, maxval=4, dtype=tf.int32)
    x = tf.image.rot90(x, k)
    scale = tf.random.stateless_uniform([], seeds[3], minval=0.75, maxval=1.0)
    crop = tf.cast(scale * INPUT_SIZE, tf.int32)
    x = tf.image.stateless_random_crop(x, [crop, crop, 3], seeds[4])
    x = tf.image.resize(x, [INPUT_SIZE, INPUT_SIZE], method="bilinear")
    x = tf.image.stateless_random_brightness(x, 0.08, seeds[5])
    x = tf.image.stateless_random_contrast(x, 0.85, 1.15, seeds[6])
    x = tf.image.stateless_random_saturation(x, 0.85, 1.15, seeds[7])
    x = tf.image.stateless_random_hue(x, 0.03, seeds[0][::-1])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def build_classifier(imagenet_weights: Path, dropout: float) -> Any:
    """Ported ImageNet backbone and its pretrained 1024-wide pre-logits conv, then a new 7-class head."""
    import keras

    from models.port import build_imagenet_mobilenet_v3_small

    imagenet = build_imagenet_mobilenet_v3_small(imagenet_weights, include_top=True)
    pre_logits = imagenet.get_layer("activation_18").output  # after conv_2 (1024) and hard-swish
    x = keras.layers.Flatten(name="features")(pre_logits)
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


def train(config: TrainConfig) -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    data_dir = Path(config.data_dir)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    samples = read_samples(data_dir)
    train_samples, validation_samples = split_by_lesion(samples, config.validation_fraction, config.split_seed)
    started = time.time()
    fingerprint = data_fingerprint(data_dir, samples)
    train_images = load_prepared_images(data_dir, train_samples)
    validation_images = load_prepared_images(data_dir, validation_samples)
    train_labels, validation_labels = labels_of(train_samples), labels_of(validation_samples)
    log.info(
        "loaded %d train / %d validation images in %.0f s",
        len(train_labels),
        len(validation_labels),
        time.time() - started,
    )
    weights = class_weights(train_labels, config.class_weight_power)
    _write_json(
        run_dir / "train_config.json",
        {
            "config": dataclasses.asdict(config),
            "data_fingerprint": fingerprint,
            "class_codes": list(CLASS_CODES),
            "class_weights": {CLASS_CODES[i]: w for i, w in weights.items()},
            "train_counts": _counts(train_labels),
            "validation_counts": _counts(validation_labels),
            "validation_lesions": len({s.lesion_id for s in validation_samples}),
        },
    )
    _write_split(run_dir / "split.json", train_samples, validation_samples)

    train_data = (
        tf.data.Dataset.from_tensor_slices((train_images, train_labels))
        .shuffle(len(train_labels), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()  # a running index over all epochs: every image gets fresh augmentation each epoch
        .map(
            lambda i, pair: (augment(pair[0], tf.stack([tf.cast(i, tf.int32), config.seed % 2**31])), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_input = validation_images.astype(np.float32)
    steps_per_epoch = int(np.ceil(len(train_labels) / config.batch_size))
    history: list[dict[str, Any]] = []

    class ValidationLog(keras.callbacks.Callback):
        def __init__(self, stage: str) -> None:
            super().__init__()
            self.stage = stage

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logits = self.model.predict(validation_input, batch_size=64, verbose=0)
            entry = {
                "stage": self.stage,
                "epoch": epoch + 1,
                "loss": float((logs or {}).get("loss", float("nan"))),
                "val_accuracy": float((logits.argmax(1) == validation_labels).mean()),
                "val_balanced_accuracy": balanced_accuracy(validation_labels, logits.argmax(1)),
                "seconds": time.time() - started,
            }
            history.append(entry)
            log.info("%s", entry)
            _write_json(run_dir / "history.json", history)
            self.model.save(run_dir / "last.keras")

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = build_classifier(Path(config.imagenet_weights), config.dropout)

    finetune_steps = config.finetune_epochs * steps_per_epoch
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
        model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=["accuracy"])
        model.fit(
            train_data,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            class_weight=weights,
            callbacks=[ValidationLog(stage)],
            verbose=2,
        )

    model.save(run_dir / "model.keras")
    log.info("training finished in %.0f s; model at %s", time.time() - started, run_dir / "model.keras")
    return run_dir


def _counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(CLASS_CODES))
    return {code: int(n) for code, n in zip(CLASS_CODES, counts, strict=True)}


def _write_split(path: Path, train_samples: list[Sample], validation_samples: list[Sample]) -> None:
    _write_json(
        path,
        {
            "train": [s.image_id for s in train_samples],
            "validation": [s.image_id for s in validation_samples],
        },
    )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(data_dir="", imagenet_weights="", run_dir="")
    parser.add_argument("--data-dir", help="HAM10000 folder (default: setting SKINSENSE_DATA_DIR)")
    parser.add_argument("--imagenet-weights", help="TFLite file (default: SKINSENSE_IMAGENET_WEIGHTS)")
    parser.add_argument("--run-dir", default="models/runs/latest")
    for field in ("seed", "split_seed", "batch_size", "head_epochs", "finetune_epochs"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    for field in ("head_learning_rate", "finetune_learning_rate", "dropout", "class_weight_power"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=getattr(defaults, field))


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    from shared.config import get_settings

    settings = get_settings()
    data_dir = args.data_dir or settings.data_dir
    weights = args.imagenet_weights or settings.imagenet_weights
    if not data_dir or not weights:
        raise SystemExit(
            "set SKINSENSE_DATA_DIR and SKINSENSE_IMAGENET_WEIGHTS (or pass --data-dir, --imagenet-weights)"
        )
    return TrainConfig(
        data_dir=str(data_dir),
        imagenet_weights=str(weights),
        run_dir=args.run_dir,
        seed=args.seed,
        split_seed=args.split_seed,
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        head_learning_rate=args.head_learning_rate,
        finetune_learning_rate=args.finetune_learning_rate,
        dropout=args.dropout,
        class_weight_power=args.class_weight_power,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(config_from_arguments(args))


if __name__ == "__main__":
    main()
