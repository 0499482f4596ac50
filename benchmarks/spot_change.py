"""How well ``models.serving.spot_change`` tells a changed spot from an unchanged one on two phone photos, and the
thresholds it uses. Prints figures, asserts nothing; never run by the tests or CI.

Unchanged pairs: every two photos of one lesion of one patient in PAD-UFES-20 (its ``lesion_id`` alone is not
enough: a few ids name lesions of two patients with different diagnoses). The patients are split in two halves
(fixed seed): the thresholds are chosen on the fitting half's pairs only (a quantile of each measure's spread),
then reported on the held-out half:

- (a) the held-out unchanged pairs: the share called "no clear change", the share called changed, the share
  refused as not comparable;
- (b) synthetic changes of held-out photos (``tests/auxil/spot_changes.py``): the spot enlarged 1.3x to 6x in
  area, darkened by 10 and 20 L*, each compared with the same photo unchanged (the change alone) and with the
  other photo of an unchanged pair (the change on top of a real retake): the share detected as LARGER / DARKER.
  The changes are drawn on the spot this module segments, so segmentation errors are not part of (b).

About 5 minutes on two busy cores (each photo is measured once, each changed photo once more).

    python benchmarks/spot_change.py                  # PAD-UFES-20 beside SKINSENSE_DATA_DIR
    python benchmarks/spot_change.py --data-dir /path/to/pad_ufes --seed 7
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.auxil, for the synthetic changes
from models.serving.preprocessing import prepare_image
from models.serving.spot_change import (
    MODULE_LIMITS,
    ChangeLimits,
    SpotChangeKind,
    SpotComparison,
    SpotMeasures,
    SpotNotFound,
    compare_measures,
    measured_spot,
)
from shared.config import get_settings
from shared.images import decode_image
from tests.auxil.spot_changes import darkened_spot, enlarged_spot, png


@dataclass(frozen=True)
class Photo:
    image_id: str
    patient_id: str
    lesion_key: tuple[str, str]  # (patient_id, lesion_id)
    path: Path


def read_photos(data_dir: Path) -> list[Photo]:
    with (data_dir / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    photos = []
    for row in rows:
        path = next((data_dir / "images" / f"{row['image_id']}{ext}" for ext in (".jpg", ".png")), None)
        if path is not None and path.is_file():
            photos.append(Photo(row["image_id"], row["patient_id"], (row["patient_id"], row["lesion_id"]), path))
    return sorted(photos, key=lambda photo: photo.image_id)


def unchanged_pairs(photos: Sequence[Photo]) -> list[tuple[Photo, Photo]]:
    by_lesion: dict[tuple[str, str], list[Photo]] = defaultdict(list)
    for photo in photos:
        by_lesion[photo.lesion_key].append(photo)
    return [pair for group in by_lesion.values() for pair in combinations(group, 2)]


def split_patients(photos: Sequence[Photo], seed: int) -> tuple[set[str], set[str]]:
    """(fitting patients, held-out patients): half of the patients with an unchanged pair on each side, the
    others shared out alike, so that both halves have pairs."""
    paired = sorted({pair[0].patient_id for pair in unchanged_pairs(photos)})
    single = sorted({photo.patient_id for photo in photos} - set(paired))
    fitting: set[str] = set()
    generator = random.Random(seed)
    for group in (paired, single):
        shuffled = list(group)
        generator.shuffle(shuffled)
        fitting.update(shuffled[: len(shuffled) // 2])
    return fitting, {photo.patient_id for photo in photos} - fitting


def quantile(values: Sequence[float], fraction: float) -> float:
    return float(np.quantile(np.asarray(values), fraction)) if values else math.nan


def choose_limits(comparisons: Sequence[SpotComparison], fraction: float) -> ChangeLimits:
    """Each limit at ``fraction`` of its measure's spread over unchanged (comparable) pairs, in both directions."""
    comparable = [c for c in comparisons if c.comparable]
    log_sizes = [abs(math.log(c.size_ratio)) for c in comparable if c.size_ratio is not None]
    darkenings = [abs(c.darkening) for c in comparable if c.darkening is not None]
    shifts = [c.colour_shift for c in comparable if c.colour_shift is not None]
    return ChangeLimits(
        size_ratio=round(math.exp(quantile(log_sizes, fraction)), 2),
        darkening=round(quantile(darkenings, fraction), 1),
        colour_shift=round(quantile(shifts, fraction), 1),
    )


def share(count: int, total: int) -> str:
    return f"{count / total:.0%} ({count}/{total})" if total else "-"


def describe_spread(name: str, comparisons: Sequence[SpotComparison]) -> None:
    comparable = [c for c in comparisons if c.comparable]
    if not comparable:
        return
    ratios = [c.size_ratio for c in comparable if c.size_ratio is not None]
    darkenings = [c.darkening for c in comparable if c.darkening is not None]
    shifts = [c.colour_shift for c in comparable if c.colour_shift is not None]
    folds = [max(r, 1 / r) for r in ratios]
    print(
        f"{name}: {len(comparable)} comparable pairs; size fold (larger/smaller) median {np.median(folds):.2f}, "
        f"max {max(folds):.2f}; |darkening| median {np.median(np.abs(darkenings)):.1f}, "
        f"max {max(np.abs(darkenings)):.1f}; colour shift median {np.median(shifts):.1f}, max {max(shifts):.1f}"
    )


def print_photo_measures(measures: Sequence[SpotMeasures | SpotNotFound]) -> None:
    """What the refusals' limits are set against: the fitting half's photos, refused and measured."""
    found = [m for m in measures if isinstance(m, SpotMeasures)]
    refusals = Counter(str(m) for m in measures if isinstance(m, SpotNotFound))
    print(f"fitting photos: {share(len(found), len(measures))} with a measurable spot; refused: {dict(refusals)}")
    if found:
        shares = np.percentile([m.share for m in found], [0, 5, 50, 95, 100]).round(3).tolist()
        contrasts = np.percentile([float(np.linalg.norm(m.contrast)) for m in found], [0, 5, 50]).round(1).tolist()
        distinctness = np.percentile([m.distinctness for m in found], [0, 5, 50]).round(2).tolist()
        edges = np.percentile([m.edge_share for m in found], [95, 100]).round(2).tolist()
        print(
            f"  spot's share of the photo min/p5/p50/p95/max {shares}; spot-skin ΔE min/p5/p50 {contrasts}; "
            f"distinctness min/p5/p50 {distinctness}; edge share p95/max {edges}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configured = get_settings().data_dir
    default = configured.parent / "pad_ufes" if configured is not None else None
    parser.add_argument("--data-dir", type=Path, default=default, help="PAD-UFES-20 (metadata.csv, images/)")
    parser.add_argument("--seed", type=int, default=24, help="the patients' split into fitting and held-out halves")
    parser.add_argument("--quantile", type=float, default=0.95, help="of unchanged pairs' spread, for each measure")
    args = parser.parse_args()
    if args.data_dir is None or not (args.data_dir / "metadata.csv").is_file():
        raise SystemExit("give --data-dir (PAD-UFES-20's folder) or set SKINSENSE_DATA_DIR beside it")

    photos = read_photos(args.data_dir)
    fitting_patients, held_out_patients = split_patients(photos, args.seed)
    prepared = {photo.image_id: decoded(photo.path.read_bytes()) for photo in photos}
    measures = {image_id: measured_spot(image) for image_id, image in prepared.items()}
    pairs = unchanged_pairs(photos)
    fitting_pairs = [pair for pair in pairs if pair[0].patient_id in fitting_patients]
    held_out_pairs = [pair for pair in pairs if pair[0].patient_id in held_out_patients]
    print(
        f"PAD-UFES-20 at {args.data_dir}: {len(photos)} photos, {len(pairs)} unchanged pairs of "
        f"{len({pair[0].lesion_key for pair in pairs})} lesions; seed {args.seed}: fitting {len(fitting_pairs)} "
        f"pairs ({len(fitting_patients)} patients), held out {len(held_out_pairs)} pairs "
        f"({len(held_out_patients)} patients)"
    )
    print_photo_measures([measures[p.image_id] for p in photos if p.patient_id in fitting_patients])

    def compared(pair: tuple[Photo, Photo], limits: ChangeLimits) -> SpotComparison:
        return compare_measures(measures[pair[0].image_id], measures[pair[1].image_id], limits)

    unlimited = ChangeLimits(math.inf, math.inf, math.inf)
    fitting_raw = [compared(pair, unlimited) for pair in fitting_pairs]
    describe_spread("fitting", fitting_raw)
    limits = choose_limits(fitting_raw, args.quantile)
    print(f"limits chosen on the fitting half (quantile {args.quantile} of each measure): {limits}")
    if limits != MODULE_LIMITS:
        print(f"  the module's are {MODULE_LIMITS}: update models/serving/spot_change.py")

    # (a) held-out unchanged pairs
    held_out = [compared(pair, limits) for pair in held_out_pairs]
    describe_spread("held out", [compared(pair, unlimited) for pair in held_out_pairs])
    total = len(held_out)
    no_change = sum(c.no_clear_change for c in held_out)
    changed = sum(c.comparable and bool(c.changes) for c in held_out)
    refused = sum(not c.comparable for c in held_out)
    print("\n(a) held-out unchanged pairs")
    print("| pairs | no clear change | called changed | not comparable |")
    print("| --- | --- | --- | --- |")
    print(f"| {total} | {share(no_change, total)} | {share(changed, total)} | {share(refused, total)} |")
    print(f"changes called: {dict(Counter(k.value for c in held_out for k in c.changes))}")
    print(f"refusals: {dict(Counter(c.reason for c in held_out if not c.comparable))}")

    # (b) synthetic changes of held-out photos: the change alone (a photo against itself changed), and the change
    # on top of a retake (one photo of an unchanged pair against the other one changed). The changed photo goes
    # through PNG bytes and the project's decoding, as a patient's photo would.
    changes: list[tuple[str, SpotChangeKind, Callable[[np.ndarray], np.ndarray]]] = [
        ("spot 1.3x in area", SpotChangeKind.LARGER, lambda image: enlarged_spot(image, 1.3)),
        ("spot 1.6x in area", SpotChangeKind.LARGER, lambda image: enlarged_spot(image, 1.6)),
        ("spot 3x in area", SpotChangeKind.LARGER, lambda image: enlarged_spot(image, 3.0)),
        ("spot 6x in area", SpotChangeKind.LARGER, lambda image: enlarged_spot(image, 6.0)),
        ("spot L* -10", SpotChangeKind.DARKER, lambda image: darkened_spot(image, 10.0)),
        ("spot L* -20", SpotChangeKind.DARKER, lambda image: darkened_spot(image, 20.0)),
    ]
    measured = {p.image_id for p in photos if isinstance(measures[p.image_id], SpotMeasures)}
    alone_photos = [p for p in photos if p.patient_id in held_out_patients and p.image_id in measured]
    retakes = [(a, b) for pair in held_out_pairs for a, b in (pair, pair[::-1]) if b.image_id in measured]
    print(
        f"\n(b) synthetic changes: {len(alone_photos)} held-out photos with a measured spot, "
        f"{len(retakes)} ordered held-out pairs whose later photo has one"
    )
    print(
        "| change | detected: photo vs itself changed | other change called | not comparable "
        "| detected: retake pair | not comparable |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    unchanged = [compare_measures(measures[a.image_id], measures[b.image_id], limits) for a, b in retakes]
    # The retake columns' baseline: how often an unchanged pair alone is called LARGER / DARKER.
    for kind in (SpotChangeKind.LARGER, SpotChangeKind.DARKER):
        called_share = share(sum(kind in c.changes for c in unchanged), len(unchanged))
        refused_share = share(sum(not c.comparable for c in unchanged), len(unchanged))
        print(f"| none (called {kind.value}) | - | - | - | {called_share} | {refused_share} |")
    for name, expected, change in changes:
        changed_photos = {
            image_id: measured_spot(decoded(png(change(prepared[image_id]))))
            for image_id in {p.image_id for p in alone_photos} | {b.image_id for _, b in retakes}
        }
        alone = [compare_measures(measures[p.image_id], changed_photos[p.image_id], limits) for p in alone_photos]
        retake = [compare_measures(measures[a.image_id], changed_photos[b.image_id], limits) for a, b in retakes]
        print(
            f"| {name} | {share(sum(expected in c.changes for c in alone), len(alone))} "
            f"| {share(sum(any(k != expected for k in c.changes) for c in alone), len(alone))} "
            f"| {share(sum(not c.comparable for c in alone), len(alone))} "
            f"| {share(sum(expected in c.changes for c in retake), len(retake))} "
            f"| {share(sum(not c.comparable for c in retake), len(retake))} |"
        )


def decoded(data: bytes) -> np.ndarray:
    """A photo as compare_spots takes it from these bytes."""
    return prepare_image(decode_image(data))


if __name__ == "__main__":
    main()
