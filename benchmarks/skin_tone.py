"""The skin tones SkinSense was measured on: the ITA (``models.serving.skin_tone.estimate_ita``) of the photos its
figures come from, per Fitzpatrick skin type where the data records one, and the ITA groups that hold enough of
them. Prints figures, asserts nothing; never run by the tests or CI. Under a minute on two busy cores, with
``--all-ham`` too.

- Phone photos: PAD-UFES-20's 328 photos (the phone figures score all of them), with the skin type the
  dermatologists recorded (I-V, blank for 130): ITA per type, and how many of each type each ITA group holds.
- Dermoscopy: HAM10000's validation split (the dermoscopy figures' 1,703 images; no skin type recorded);
  ``--all-ham`` adds every HAM10000 image here.

The measured range per kind of photo (``MEASURED_ITA_GROUPS`` in models/serving/skin_tone.py) is the run of ITA
groups, from the lightest, that each hold at least ``--min-share`` of the kind's photos with an estimate and at
least ``--min-photos`` photos. A smaller share: whatever the model does on that group, it moves the kind's figures
by less than the share, so they say nothing about it; fewer photos: not even a rough figure of the group's own.
The first group that falls short ends the range (every darker group is outside it too).

    python benchmarks/skin_tone.py                         # PAD-UFES-20 beside SKINSENSE_DATA_DIR (HAM10000)
    python benchmarks/skin_tone.py --all-ham --min-share 0.05 --min-photos 30
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, when run as a script
from models.serving.inference import ARTIFACT_DIR
from models.serving.preprocessing import prepare_image
from models.serving.skin_tone import MEASURED_ITA_GROUPS, ItaGroup, estimate_ita, ita_group
from models.training.data import image_path, read_samples
from models.training.validation_data import validation_samples
from shared.config import get_settings
from shared.images import decode_image
from shared.labels import PhotoKind

FITZPATRICK_NAMES = {"1.0": "I", "2.0": "II", "3.0": "III", "4.0": "IV", "5.0": "V", "6.0": "VI", "": "not recorded"}


def ita_of(path: Path) -> float | None:
    """The photo's ITA as the serving path computes it: decoded and prepared as the model sees it."""
    return estimate_ita(prepare_image(decode_image(path.read_bytes())))


def group_counts(itas: Sequence[float | None]) -> Counter[ItaGroup | None]:
    return Counter(None if ita is None else ita_group(ita) for ita in itas)


def measured_groups(counts: Mapping[ItaGroup | None, int], min_share: float, min_photos: int) -> frozenset[ItaGroup]:
    """The lightest groups, in order, that each hold at least ``min_share`` of the photos with an estimate and at
    least ``min_photos`` photos."""
    estimated = sum(count for group, count in counts.items() if group is not None)
    chosen: set[ItaGroup] = set()
    for group in ItaGroup:  # lightest first
        count = counts.get(group, 0)
        if count < min_share * estimated or count < min_photos:
            break
        chosen.add(group)
    return frozenset(chosen)


def spread(itas: Sequence[float]) -> str:
    if not itas:
        return "-"
    p5, p25, p50, p75, p95 = np.percentile(np.asarray(itas), [5, 25, 50, 75, 95])
    return f"{p50:.1f} ({p25:.1f} to {p75:.1f}; 5-95 %: {p5:.1f} to {p95:.1f})"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (ties share their mean rank)."""

    def ranks(values: Sequence[float]) -> np.ndarray:
        array = np.asarray(values, dtype=float)
        order = array.argsort(kind="stable")
        ranked = np.empty(len(array))
        ranked[order] = np.arange(len(array))
        for value in np.unique(array):
            tied = array == value
            ranked[tied] = ranked[tied].mean()
        return ranked

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def print_distribution(
    title: str, counts: Counter[ItaGroup | None], min_share: float, min_photos: int
) -> frozenset[ItaGroup]:
    total = sum(counts.values())
    estimated = total - counts.get(None, 0)
    print(f"\n{title}: {total} photos, {estimated} with an estimate")
    print("| ITA group | photos | share of those with an estimate |")
    print("| --- | --- | --- |")
    for group in ItaGroup:
        count = counts.get(group, 0)
        print(f"| {group.value} | {count} | {count / estimated:.1%} |")
    print(f"| no estimate (too few skin pixels) | {counts.get(None, 0)} | |")
    chosen = measured_groups(counts, min_share, min_photos)
    listed = [group.value for group in ItaGroup if group in chosen]
    print(f"measured on (each group >= {min_share:.0%} and >= {min_photos} photos, lightest first): {listed}")
    outside = sum(count for group, count in counts.items() if group is not None and group not in chosen)
    print(f"outside that range: {outside} photos ({outside / estimated:.1%} of those with an estimate)")
    return chosen


def phone_photos(pad_root: Path, min_share: float, min_photos: int) -> frozenset[ItaGroup]:
    with (pad_root / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    itas = [ita_of(pad_root / "images" / f"{row['image_id']}.jpg") for row in rows]
    types = [row["fitzpatrick"] for row in rows]
    print(f"PAD-UFES-20 phone photos at {pad_root}: {len(rows)}")
    print("\n| Fitzpatrick type | photos | no estimate | ITA median (IQR; 5-95 %) | " + " | ".join(ItaGroup) + " |")
    print("| --- | --- | --- | --- |" + " --- |" * len(ItaGroup))
    for code, name in FITZPATRICK_NAMES.items():
        of_type = [ita for ita, recorded in zip(itas, types, strict=True) if recorded == code]
        if not of_type:
            continue
        counts = group_counts(of_type)
        estimated = [ita for ita in of_type if ita is not None]
        cells = " | ".join(str(counts.get(group, 0)) for group in ItaGroup)
        print(f"| {name} | {len(of_type)} | {counts.get(None, 0)} | {spread(estimated)} | {cells} |")
    typed = [(float(recorded), ita) for ita, recorded in zip(itas, types, strict=True) if recorded and ita is not None]
    print(
        f"rank correlation of ITA with the recorded type ({len(typed)} photos): "
        f"{spearman([t for t, _ in typed], [i for _, i in typed]):+.2f} (-1: ITA falls as the type rises)"
    )
    chosen = print_distribution("phone photos by ITA group", group_counts(itas), min_share, min_photos)
    for name, codes in (("I-III", ("1.0", "2.0", "3.0")), ("IV-VI", ("4.0", "5.0", "6.0"))):
        of_types = [ita for ita, recorded in zip(itas, types, strict=True) if recorded in codes]
        flagged = sum(ita is not None and ita_group(ita) not in chosen for ita in of_types)
        print(f"types {name} outside that range (told the caveat): {flagged} of {len(of_types)}")
    return chosen


def dermoscopic_photos(ham_dir: Path, min_share: float, min_photos: int, every_image: bool) -> frozenset[ItaGroup]:
    samples = validation_samples(ham_dir, ARTIFACT_DIR)
    itas = [ita_of(image_path(ham_dir, sample)) for sample in samples]
    print(f"\nHAM10000 at {ham_dir}: ITA median (IQR; 5-95 %) {spread([i for i in itas if i is not None])}")
    chosen = print_distribution("dermoscopy, validation split, by ITA group", group_counts(itas), min_share, min_photos)
    if every_image:
        everything = [ita_of(image_path(ham_dir, sample)) for sample in read_samples(ham_dir)]
        counts = group_counts(everything)
        print_distribution("dermoscopy, every HAM10000 image here, by ITA group", counts, min_share, min_photos)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configured = get_settings().data_dir
    parser.add_argument("--ham-dir", type=Path, default=configured, help="HAM10000 (default: SKINSENSE_DATA_DIR)")
    parser.add_argument("--pad-dir", type=Path, default=None, help="PAD-UFES-20's photos (default: beside HAM10000)")
    parser.add_argument("--min-share", type=float, default=0.05, help="of a kind's photos, for a group to count")
    parser.add_argument("--min-photos", type=int, default=30, help="of a kind's photos, for a group to count")
    parser.add_argument("--all-ham", action="store_true", help="also every HAM10000 image, not only validation")
    args = parser.parse_args()
    if args.ham_dir is None or not (args.ham_dir / "metadata.csv").is_file():
        raise SystemExit("give --ham-dir (HAM10000's folder) or set SKINSENSE_DATA_DIR")
    pad_dir = args.pad_dir or args.ham_dir.parent / "pad_ufes"

    chosen = {
        PhotoKind.CLINICAL: phone_photos(pad_dir, args.min_share, args.min_photos),
        PhotoKind.DERMOSCOPIC: dermoscopic_photos(args.ham_dir, args.min_share, args.min_photos, args.all_ham),
    }
    for kind, groups in chosen.items():
        if groups != MEASURED_ITA_GROUPS[kind]:
            module = sorted(g.value for g in MEASURED_ITA_GROUPS[kind])
            print(f"{kind.value}: the module's groups are {module}: update models/serving/skin_tone.py")


if __name__ == "__main__":
    main()
