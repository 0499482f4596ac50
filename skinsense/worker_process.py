"""``python -m skinsense.worker_process CELERY-ARGS``: Celery's worker command with prometheus-client's
multiprocess mode set up. Each prefork child writes its metrics into PROMETHEUS_MULTIPROC_DIR and the main
process serves their sum (shared/metrics.py); the folder must exist, be this worker's alone and start empty,
so it is made here (or emptied, when the environment names one) before Celery starts."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from shared.metrics import MULTIPROCESS_ENV


def prepare_multiprocess_dir() -> Path:
    named = os.environ.get(MULTIPROCESS_ENV)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # values of an earlier run of this worker
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="skinsense-worker-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def main() -> None:
    prepare_multiprocess_dir()
    os.execv(sys.executable, [sys.executable, "-m", "celery", *sys.argv[1:]])


if __name__ == "__main__":
    main()
