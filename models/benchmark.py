"""Benchmark the model runtimes on this machine (``skinsense benchmark``): prints figures, asserts nothing.

Each runtime is measured in its own process, so that memory figures are not mixed: load time, peak
resident memory after warm-up, single-image latency (median and 95th percentile) and throughput.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from models.inference import ARTIFACT_DIR, RUNTIMES
from models.preprocessing import INPUT_SIZE


def measure(runtime: str, images: int, threads: int) -> dict[str, float | str]:
    started = time.perf_counter()
    from models.inference import Classifier

    classifier = Classifier(ARTIFACT_DIR, runtime=runtime, threads=threads)  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(images, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    for image in batch[:5]:  # warm-up
        classifier.classify_prepared([image])
    latencies = []
    for image in batch:
        t0 = time.perf_counter()
        classifier.classify_prepared([image])
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "runtime": runtime,
        "threads": threads,
        "load_s": round(load_s, 2),
        "latency_ms_median": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
        "images_per_s": round(1000 / statistics.mean(latencies), 1),
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
                "models.benchmark",
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
    header = f"{'runtime':<8} {'load s':>7} {'median ms':>10} {'p95 ms':>8} {'img/s':>7} {'peak RSS MB':>12}"
    print(header)
    for r in results:
        print(
            f"{r['runtime']:<8} {r['load_s']:>7} {r['latency_ms_median']:>10} {r['latency_ms_p95']:>8} "
            f"{r['images_per_s']:>7} {r['peak_rss_mb']:>12}"
        )
    fastest = min(results, key=lambda r: float(r["latency_ms_median"]))
    print(
        f"fastest: {fastest['runtime']} (artifact default: "
        f"{json.loads((ARTIFACT_DIR / 'metadata.json').read_text())['default_runtime']})"
    )


if __name__ == "__main__":
    main()
