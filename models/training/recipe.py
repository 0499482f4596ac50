"""The shipped model's whole recipe (``skinsense train``): train, package and evaluate.

1. Phone photos (clinical kind): five runs on PAD-UFES-20, each holding one fold of patients out (their
   out-of-fold logits calibrate the kind and measure it), then the shipped run on every phone patient.
   Measured on this 2-core machine: about 5 minutes a run, 30-35 minutes in all (on 2026-12-07 a slower
   machine of the same kind took 15-18 minutes a run, with ``--loader-threads 2``; one TensorFlow thread was slower).
2. Dermoscopy: two HAM10000 runs (seeds 20261125 and 7, 18 and 8 fine-tuning epochs), averaged into one
   network: about 80 minutes. ``--dermoscopic-run DIR`` reuses a finished one instead, ``--shipped-dermoscopic``
   the shipped one (package.shipped_dermoscopic_run: a new phone network beside it). The shipped
   dermoscopy network is the previous artifact's, trained with this recipe by the earlier models/training/train.py,
   whose augmentation ran in TensorFlow: a retrained one is similar, not identical.
3. ``models.training.package`` (the picture head, the calibration and the policy per kind), then
   ``models.training.evaluate`` into models/evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from models.training.train import TrainConfig, train

log = logging.getLogger(__name__)
PHONE_FOLDS = 5
DERMOSCOPIC_RUNS = ((20261125, 18), (7, 8))  # (seed, fine-tuning epochs) of the two averaged runs


def clinical_config(base: TrainConfig, run_dir: Path, phone_folds: int, phone_fold: int = 0) -> TrainConfig:
    """A phone-only run: PAD-UFES-20's photos (four times an epoch) and lesion crops, 2 + 6 epochs."""
    return dataclasses.replace(
        base,
        run_dir=str(run_dir),
        use_ham=False,
        train_on_phone_photos=True,
        crop_repeat=1,
        phone_repeat=4,
        head_epochs=2,
        finetune_epochs=6,
        phone_folds=phone_folds,
        phone_fold=phone_fold,
    )


def train_clinical(base: TrainConfig, runs_root: Path) -> tuple[Path, list[Path]]:
    """The phone-photo network: the cross-validation runs, then the shipped run on every patient."""
    cv_runs = [
        train(clinical_config(base, runs_root / f"clinical_fold{fold}", PHONE_FOLDS, fold))
        for fold in range(PHONE_FOLDS)
    ]
    final = train(clinical_config(base, runs_root / "clinical", phone_folds=0))
    return final, cv_runs


def train_dermoscopic(base: TrainConfig, runs_root: Path) -> Path:
    """The dermoscopy network: two HAM10000 runs on the same split, averaged into one Keras model."""
    from models.training.package import average_models

    runs = [
        train(
            dataclasses.replace(
                base,
                seed=seed,
                finetune_epochs=epochs,
                phone_data_root="",
                phone_style_probability=0.0,  # the run with phone-like dermoscopy (and crops) scored 0.651, not 0.696
                run_dir=str(runs_root / f"dermoscopic_run{i}"),
            )
        )
        for i, (seed, epochs) in enumerate(DERMOSCOPIC_RUNS, start=1)
    ]
    target = runs_root / "dermoscopic"
    target.mkdir(parents=True, exist_ok=True)
    average_models([run / "model.keras" for run in runs]).save(target / "model.keras")
    first = json.loads((runs[0] / "train_config.json").read_text())
    first["config"] = [json.loads((run / "train_config.json").read_text())["config"] for run in runs]
    (target / "train_config.json").write_text(json.dumps(first, indent=2) + "\n")
    (target / "split.json").write_text((runs[0] / "split.json").read_text())
    return target


def main(args: argparse.Namespace) -> int:
    from models.serving.inference import ARTIFACT_DIR
    from models.training.evaluate import evaluate, summary
    from models.training.package import SHIPPED_DERMOSCOPIC_RUN, package, shipped_dermoscopic_run
    from models.training.pad_ufes import resolve_phone_data_root
    from models.training.train import config_from_arguments

    base = config_from_arguments(args)
    runs_root = Path(args.run_dir).parent
    phone_root = resolve_phone_data_root(Path(base.phone_data_root) if base.phone_data_root else None)
    shipped = (  # taken before packaging replaces the artifact it comes from
        shipped_dermoscopic_run(ARTIFACT_DIR, Path(base.data_dir), runs_root / SHIPPED_DERMOSCOPIC_RUN.name)
        if args.shipped_dermoscopic
        else None
    )
    clinical, cv_runs = train_clinical(base, runs_root)
    dermoscopic = shipped or args.dermoscopic_run or train_dermoscopic(base, runs_root)
    weights = Path(base.imagenet_weights)
    package(dermoscopic, clinical, cv_runs, Path(base.data_dir), phone_root, weights)
    report = evaluate(Path(base.data_dir), phone_root, Path("models/evaluation"))
    print(json.dumps(summary(report), indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.training.train import add_arguments as add_training_arguments

    add_training_arguments(parser)
    dermoscopy = parser.add_mutually_exclusive_group()
    dermoscopy.add_argument(
        "--dermoscopic-run", type=Path, default=None, help="reuse this dermoscopy run (model.keras, split.json)"
    )
    dermoscopy.add_argument(
        "--shipped-dermoscopic", action="store_true", help="keep the shipped dermoscopy network (no retraining)"
    )
