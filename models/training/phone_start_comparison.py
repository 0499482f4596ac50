"""Phone cross-validation runs measured exactly as the shipped phone network is, side by side with it (issue 19,
item 4: the phone network trained from the dermoscopy network's weights, ``train.py --init-from``).

Each candidate is a set of fold runs (``held_out_logits.npz``; together they hold every phone patient out once).
Their out-of-fold logits are blended with the phone head's out-of-fold probabilities as models/training/package.py
blends the shipped ones (``cross_validation_logits``, ``phone_head_out_of_fold`` on the artifact's frozen ImageNet
features, ``blend_logits``), then measured as the shipped ones are: the nested, patient-grouped outer-fold triage
figures (models/training/operating_point.py), photo only and with the answers, and the plain 5-class balanced
accuracy and recall per class of the blended logits. The baseline is the artifact's clinical_cross_validation.npz.
Also shown: the networks alone (no phone head); the baseline's are recovered from the blend, which is invertible
given the same head. ``--average-with-shipped`` adds each candidate's ensemble with the shipped network (the two
networks' out-of-fold logits averaged; the folds are the same), to tell a better network from a second opinion.

    python -m models.training.phone_start_comparison \\
        --candidate from_dermoscopy /tmp/phone_from_derm/fold{0,1,2,3,4} [--repeats 5] [--output report.json] \\
        [--average-with-shipped]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.inference import ARTIFACT_DIR, PROBABILITY_FLOOR, LiteRTNetwork, blend_logits
from models.serving.metrics import balanced_accuracy
from models.serving.preprocessing import to_model_input
from models.training.data import load_prepared
from models.training.operating_point import load_phone_logits, nested_report, nested_runs
from models.training.package import FILES, cross_validation_logits, phone_head_out_of_fold
from models.training.pad_ufes import SHARED_CODES, PhoneSample, resolve_phone_data_root
from shared.labels import CLASS_CODES

log = logging.getLogger(__name__)
BASELINE = "shipped"
TRIAGE_FIGURES: tuple[str, ...] = ("malignant_told_low", "benign_told_low", "benign_told_medium")
TRIAGE_FIGURES += ("benign_forwarded", "melanoma_forwarded")
RULES = {"photo_only": "photo only", "answers_as_served": "with answers (as served)"}


def class_recall(samples: Sequence[PhoneSample], logits: np.ndarray) -> dict[str, Any]:
    """The plain argmax figures over the 5 classes phone photos have: balanced accuracy and recall per class."""
    labels = np.array([s.label for s in samples])
    predictions = logits.argmax(axis=1)
    scored = np.isin(labels, [CLASS_CODES.index(code) for code in SHARED_CODES])
    recall = {}
    for code in SHARED_CODES:
        rows = labels == CLASS_CODES.index(code)
        recall[code] = {"correct": int((predictions[rows] == labels[rows]).sum()), "of": int(rows.sum())}
    return {"balanced_accuracy": balanced_accuracy(labels[scored], predictions[scored]), "recall": recall}


def measure(samples: Sequence[PhoneSample], blended: np.ndarray, network: np.ndarray, repeats: int) -> dict[str, Any]:
    return {
        "nested": nested_report(samples, nested_runs(samples, blended, repeats)),
        "blended": class_recall(samples, blended),
        "network_alone": class_recall(samples, network),
    }


def with_shipped_averages(networks: dict[str, np.ndarray], shipped_network: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate, and beside it the two-network ensemble of it and the shipped network: their logits
    averaged, as the server averages the dermoscopy network's members."""
    averaged = {f"{name}+{BASELINE}": (network + shipped_network) / 2 for name, network in networks.items()}
    return networks | averaged


def compare_networks(
    networks: dict[str, np.ndarray],
    samples: list[PhoneSample],
    shipped: np.ndarray,
    artifact_dir: Path,
    repeats: int,
    average_with_shipped: bool = False,
) -> dict[str, dict[str, Any]]:
    """The shipped figures (``shipped``: the artifact's blended out-of-fold logits of ``samples``, its phone
    validation photos) beside each candidate's: ``networks`` holds each candidate's out-of-fold network logits,
    blended with the phone head as shipped (and, with ``average_with_shipped``, also averaged with the shipped
    network first)."""
    features = LiteRTNetwork(artifact_dir / FILES["features"]["litert"], threads=2)
    embeddings = features.run(to_model_input(load_prepared([s.path for s in samples], workers=2)))
    head = phone_head_out_of_fold(samples, embeddings)
    log_head = np.log(np.maximum(head, PROBABILITY_FLOOR))
    shipped_network = 2 * shipped - log_head  # the blend inverted: same head, equal weights
    results = {BASELINE: measure(samples, shipped, shipped_network, repeats)}
    if average_with_shipped:
        networks = with_shipped_averages(networks, shipped_network)
    for name, network in networks.items():
        results[name] = measure(samples, blend_logits(network, head), network, repeats)
    return results


def compare(
    candidates: dict[str, list[Path]],
    phone_root: Path,
    artifact_dir: Path,
    repeats: int,
    average_with_shipped: bool = False,
) -> dict[str, dict[str, Any]]:
    samples, shipped = load_phone_logits(artifact_dir, phone_root)
    networks = {name: cross_validation_logits(runs, samples) for name, runs in candidates.items()}
    results = compare_networks(networks, samples, shipped, artifact_dir, repeats, average_with_shipped)
    for name, runs in candidates.items():
        results[name]["runs"] = [str(run) for run in runs]
    return results


def _share(figure: dict[str, Any]) -> str:
    return f"{figure['share']:6.1%} ({figure['count']:>3}/{figure['of']:<3})"


def format_comparison(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    width = 24
    lines = [f"{'':28s}" + "".join(f"{name:>{width}s}" for name in names)]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"{label:28s}" + "".join(f"{cell:>{width}s}" for cell in cells))

    first = results[names[0]]["nested"]
    lines.insert(0, f"{first['photos']} phone photos of {first['patients']} patients; nested outer folds, repeat 1")
    for rule, title in RULES.items():
        lines.append(f"{title}:")
        for figure in TRIAGE_FIGURES:
            row(f"  {figure}", [_share(results[n]["nested"][rule][figure]) for n in names])
            spread = [results[n]["nested"][rule]["over_repeats"].get(figure) for n in names]
            if all(spread) and len(spread[0]) > 1:
                row("    over repeats", [f"{min(s):.1%}-{max(s):.1%}" for s in spread if s])
        row("  balanced accuracy", [f"{results[n]['nested'][rule]['balanced_accuracy']:.3f}" for n in names])
        row("  malignant AUC", [f"{results[n]['nested'][rule]['malignant_ranking_auc']:.3f}" for n in names])
    for part, title in (("blended", "plain argmax, blended logits"), ("network_alone", "plain argmax, network alone")):
        lines.append(f"{title}:")
        row("  balanced accuracy (5)", [f"{results[n][part]['balanced_accuracy']:.3f}" for n in names])
        for code in SHARED_CODES:
            cells = []
            for n in names:
                found = results[n][part]["recall"][code]
                cells.append(f"{found['correct'] / found['of']:6.1%} ({found['correct']:>3}/{found['of']:<3})")
            row(f"  recall {code}", cells)
    return "\n".join(lines)


def add_measuring_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every comparison of phone networks shares: where the data and artifact are, how many nested
    repeats, where to write the report."""
    parser.add_argument("--phone-data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--repeats", type=int, default=5, help="nested cross-validations (other patient folds)")
    parser.add_argument("--output", type=Path, default=None, help="also write the whole report here (JSON)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--candidate",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "RUN"),
        help="a name and its fold run folders (repeat the option for several candidates)",
    )
    parser.add_argument(
        "--average-with-shipped",
        action="store_true",
        help="also measure each candidate averaged with the shipped network (a two-network ensemble)",
    )
    add_measuring_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if any(len(candidate) < 2 for candidate in args.candidate):
        parser.error("--candidate needs a name and at least one run folder")
    candidates = {candidate[0]: [Path(run) for run in candidate[1:]] for candidate in args.candidate}
    results = compare(
        candidates,
        resolve_phone_data_root(args.phone_data_dir),
        args.artifact_dir,
        args.repeats,
        args.average_with_shipped,
    )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(format_comparison(results))


if __name__ == "__main__":
    main()
