"""Test-time views of the phone network compared (issue 19, item 4: more test-time views, a lesion-centred crop),
measured exactly as the shipped phone figures are (models/training/phone_start_comparison.py).

Each phone cross-validation run's network scores the photos of the patients it held out under every view: the
whole photo and centre crops of 90, 80 and 70 % of its side (a closer framing; the photos are 300 px, so a
crop loses little), and a lesion-centred crop (the spot segmented as models/serving/spot_change.py does, its box
widened 1.6 times and to at least half the photo), each in the 8 orientations of a square (the 4 flips the
server uses and their transposes, i.e. the right-angle rotations). A view set's logits are the mean of its
views' logits, as the server averages them; each set is then blended with the phone head and measured on the
nested outer folds beside the shipped figures.

The runs must be the shipped recipe's five fold runs (their ``split.json`` names the photos each held out):

    python -m models.training.view_comparison --runs RUN_DIR/fold{0,1,2,3,4} [--repeats 5] [--output report.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from models.serving.preprocessing import INPUT_SIZE, RESAMPLING, prepare_image
from models.training.framing import Box, lesion_box, square_box
from models.training.operating_point import load_phone_logits
from models.training.pad_ufes import PhoneSample, resolve_phone_data_root
from models.training.phone_start_comparison import add_measuring_arguments, compare_networks, format_comparison

log = logging.getLogger(__name__)
FLIPS = ("identity", "left_right", "up_down", "rotate_180")  # the server's four views
ORIENTATIONS = FLIPS + tuple(f"transposed_{flip}" for flip in FLIPS)
CENTRE_CROPS = {"whole": 1.0, "centre_90": 0.9, "centre_80": 0.8, "centre_70": 0.7}


def _oriented(batch: np.ndarray, orientation: str) -> np.ndarray:
    if orientation.startswith("transposed_"):
        batch, orientation = batch.transpose(0, 2, 1, 3), orientation.removeprefix("transposed_")
    flips: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "identity": lambda b: b,
        "left_right": lambda b: b[:, :, ::-1],
        "up_down": lambda b: b[:, ::-1],
        "rotate_180": lambda b: b[:, ::-1, ::-1],
    }
    return np.ascontiguousarray(flips[orientation](batch), dtype=np.float32)


def _resized(image: Image.Image, box: Box) -> np.ndarray:
    return np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), RESAMPLING, box=box), dtype=np.uint8)


def lesion_crop(image: Image.Image) -> tuple[np.ndarray, bool]:
    """The lesion-centred crop of a photo (models/training/framing.py), and whether a spot was found (if not:
    the whole photo)."""
    box = lesion_box(image)
    return (prepare_image(image), False) if box is None else (_resized(image, box), True)


def framings(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """Every framing of one photo (model inputs before orientation), and whether its lesion was found."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    views = {name: _resized(image, square_box(image.size, (0.5, 0.5), share)) for name, share in CENTRE_CROPS.items()}
    views["whole"] = prepare_image(image)  # exactly what the server feeds (the crop of share 1 is the same resize)
    views["lesion"], found = lesion_crop(image)
    return views, found


def view_logits(runs: list[Path], samples: list[PhoneSample]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each photo's logits under every framing and orientation (``"framing:orientation"``), from the run that
    held its patient out, in the order of ``samples``; and whether each photo's lesion was found."""
    import keras

    index = {sample.image_id: position for position, sample in enumerate(samples)}
    logits: dict[str, np.ndarray] = {}
    found = np.zeros(len(samples), dtype=bool)
    for run in runs:
        held_out = [index[i] for i in json.loads((run / "split.json").read_text())["phone_held_out"] if i in index]
        model = keras.models.load_model(run / "model.keras", compile=False)
        photos = [framings(samples[position].path) for position in held_out]
        found[held_out] = [lesion_found for _, lesion_found in photos]
        for framing in photos[0][0]:
            batch = np.stack([views[framing] for views, _ in photos])
            for orientation in ORIENTATIONS:
                outputs = np.asarray(model.predict(_oriented(batch, orientation), batch_size=64, verbose=0))
                logits.setdefault(f"{framing}:{orientation}", np.zeros((len(samples), outputs.shape[1])))
                logits[f"{framing}:{orientation}"][held_out] = outputs
        log.info("%s: %d held-out photos", run, len(held_out))
    return logits, found


def _views(framing_names: tuple[str, ...], orientations: tuple[str, ...]) -> list[str]:
    return [f"{framing}:{orientation}" for framing in framing_names for orientation in orientations]


VIEW_SETS: dict[str, list[str]] = {
    "4 flips (as served)": _views(("whole",), FLIPS),
    "8 orientations": _views(("whole",), ORIENTATIONS),
    "4 flips + centre 90 %": _views(("whole", "centre_90"), FLIPS),
    "4 flips + centre 80 %": _views(("whole", "centre_80"), FLIPS),
    "8 orientations + centre 80 %": _views(("whole", "centre_80"), ORIENTATIONS),
    "4 flips x 4 framings": _views(tuple(CENTRE_CROPS), FLIPS),
    "4 flips + lesion crop": _views(("whole", "lesion"), FLIPS),
    "lesion crop alone": _views(("lesion",), FLIPS),
}


def compare_views(
    runs: list[Path], phone_root: Path, artifact_dir: Path, repeats: int
) -> tuple[dict[str, dict[str, Any]], float]:
    samples, shipped = load_phone_logits(artifact_dir, phone_root)
    logits, found = view_logits(runs, samples)
    networks = {name: np.mean([logits[view] for view in views], axis=0) for name, views in VIEW_SETS.items()}
    return compare_networks(networks, samples, shipped, artifact_dir, repeats), float(found.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="the five phone fold run folders")
    add_measuring_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    phone_root = resolve_phone_data_root(args.phone_data_dir)
    results, lesion_found = compare_views(args.runs, phone_root, args.artifact_dir, args.repeats)
    if args.output:
        args.output.write_text(json.dumps({"lesion_found": lesion_found, "results": results}, indent=2) + "\n")
    print(f"lesion found in {lesion_found:.1%} of the photos (else the lesion crop is the whole photo)")
    print(format_comparison(results))


if __name__ == "__main__":
    main()
