"""``python -m skinsense.worker_process CELERY-ARGS``: Celery's worker command with prometheus-client's
multiprocess mode set up. Each prefork child writes its metrics into PROMETHEUS_MULTIPROC_DIR and the main
process serves their sum (shared/metrics.py); the folder must exist, be this worker's alone and start empty,
so it is made here (or emptied, when the environment names one) before Celery starts.

Each pool process does its numerical work on its own core: NumPy's BLAS gets one thread per process. With its
default (a thread per core), the thread it wakes for the explanation picture's matrix products spins after each
one and took more CPU than the work itself (2 cores: a third of the worker's CPU per photo)."""

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


# Before NumPy is imported (by Celery's children, after the exec below); a value the environment sets is kept.
ONE_THREAD_PER_PROCESS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread_per_process() -> None:
    """For this process and those it starts, unless NumPy is loaded already (then it is too late)."""
    for variable in ONE_THREAD_PER_PROCESS:
        os.environ.setdefault(variable, "1")


def main() -> None:
    prepare_multiprocess_dir()
    one_blas_thread_per_process()
    os.execv(sys.executable, [sys.executable, "-m", "celery", *sys.argv[1:]])


if __name__ == "__main__":
    main()
