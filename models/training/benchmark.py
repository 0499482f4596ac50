"""Benchmark the model runtimes on this machine (``skinsense benchmark``): prints figures, asserts nothing.

Each runtime is measured in its own process, so that memory figures are not mixed: load time, peak
resident memory after warm-up, and the latency of each stage of ``screen_photo`` on one photo (decode,
quality measures, picture head with its ImageNet features, lesion model over its test-time views) and of
the whole call: median and 95th percentile, on real lesion photos of both kinds when the data are there.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.inference import ARTIFACT_DIR, RUNTIMES

# total: decode, gates and model of one photo (models.serving.screening); uncertain: the same, of the photos whose
# kind was uncertain (both networks run); explanation: its picture (models.serving.explain)
STAGES = ("decode", "quality", "picture", "model", "total", "uncertain", "explanation")


def _photos(count: int) -> list[bytes]:
    """JPEG bytes of lesion photos: HAM10000 and PAD-UFES-20 alternately if there, else a generated image."""
    import io

    from PIL import Image

    from shared.config import get_settings

    data_dir = get_settings().data_dir
    paths: list[Path] = []
    if data_dir is not None and (data_dir / "images").is_dir():
        ham = sorted((data_dir / "images").glob("*.jpg"))[: count // 2]
        phone = sorted((data_dir.parent / "pad_ufes" / "images").glob("*.jpg"))[: count // 2]
        paths = [p for pair in zip(ham, phone, strict=False) for p in pair] or ham
    if paths:
        return [p.read_bytes() for p in paths]
    rng = np.random.default_rng(0)
    pixels = (np.full((300, 300, 3), (200, 150, 130)) + rng.normal(0, 8, (300, 300, 3))).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG")
    return [buffer.getvalue()] * count


def _decode(data: bytes) -> np.ndarray:
    from models.serving.preprocessing import prepare_image
    from shared.images import decode_image

    return prepare_image(decode_image(data))


def measure(runtime: str, images: int, threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    from models.serving.explain import explanation_picture
    from models.serving.inference import Classifier
    from models.serving.quality import measure_quality
    from models.serving.screening import screen_photo
    from shared.images import UnreadableImage
    from shared.labels import PhotoKind

    classifier = Classifier(ARTIFACT_DIR, runtime=runtime, threads=threads)  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    photos = _photos(images)
    stages: dict[str, list[float]] = {name: [] for name in STAGES}

    def timed(stage: str, work: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = work()
        stages[stage].append((time.perf_counter() - t0) * 1000)
        return result

    for round_ in range(2):  # the first round warms up and is not kept
        for data in photos:
            prepared = timed("decode", functools.partial(_decode, data))
            timed("quality", functools.partial(measure_quality, prepared))
            timed("picture", functools.partial(classifier.picture_probabilities, [prepared]))
            timed("model", functools.partial(classifier.classify_prepared, [prepared], [PhotoKind.CLINICAL]))
            with contextlib.suppress(UnreadableImage):
                prediction = timed("total", functools.partial(screen_photo, data, classifier))
                if prediction.photo_kind_uncertain:
                    stages["uncertain"].append(stages["total"][-1])
                ranking = prediction.to_dict()["ranking"]
                # As the worker draws it: from the feature map the analysis kept.
                kind, feature_map = prediction.photo_kind, prediction.feature_map
                picture = functools.partial(explanation_picture, data, classifier, ranking, kind, feature_map)
                timed("explanation", picture)
        if round_ == 0:
            stages = {name: [] for name in stages}
    return {
        "runtime": runtime,
        "threads": threads,
        "photos": len(photos),
        "load_s": round(load_s, 2),
        **{f"{name}_ms_median": round(statistics.median(v), 2) for name, v in stages.items() if v},
        **{f"{name}_ms_p95": round(float(np.percentile(v, 95)), 2) for name, v in stages.items() if v},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads (workers use 1)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="measure one runtime in this process")
    args = parser.parse_args(argv)
    if args.runtime:
        print(json.dumps(measure(args.runtime, args.images, args.threads)))
        return
    results = []
    for runtime in RUNTIMES:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "models.training.benchmark",
                "--runtime",
                runtime,
                "--images",
                str(args.images),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    stages = STAGES
    print(f"per photo, median / p95 ms, {args.threads} thread(s); photos: {results[0]['photos']}")
    print(f"{'runtime':<8} {'load s':>7} " + " ".join(f"{s:>13}" for s in stages) + f" {'peak RSS MB':>12}")
    for r in results:
        cells = " ".join(f"{r.get(f'{s}_ms_median', '-'):>6}/{r.get(f'{s}_ms_p95', '-'):<6}" for s in stages)
        print(f"{r['runtime']:<8} {r['load_s']:>7} {cells} {r['peak_rss_mb']:>12}")
    fastest = min(results, key=lambda r: float(r["model_ms_median"]))
    print(
        f"fastest: {fastest['runtime']} (artifact default: "
        f"{json.loads((ARTIFACT_DIR / 'metadata.json').read_text())['default_runtime']})"
    )


if __name__ == "__main__":
    main()
