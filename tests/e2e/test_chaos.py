"""Chaos on the real stack (benchmarks/chaos.py's harness, bounded): about 50 photos from distinct chats, one
fault injected mid-burst, then every photo must be answered exactly once and its audit row be in its final state.

The stack is supervised as under `skinsense up` (a killed process comes back), on a redis-server with its
append-only file, the sandbox with its fault controls, a prefork worker, the beat (reconciler) and the bot. A
failing test prints what went wrong (the first wrong rows) and the processes' logs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the harness lives with the benchmark
from chaos import (
    Fault,
    Outcome,
    fault_bot_killed,
    fault_redis_restarted,
    fault_worker_child_killed,
    fault_worker_main_killed,
    lesion_photos,
    postgres_stopped,
    rate_fault,
    run_fault,
)

pytestmark = pytest.mark.e2e
RUNS_LONG = True  # tests/conftest.py: started first
SPREAD_OVER_WORKERS = True  # each test starts a whole stack of its own: they run side by side under ./dev test

PHOTOS = 50
FIRST_CHAT = 810_000
# The reconciler's deadlines, shorter than in production (the benchmark measures those): a job held by a killed
# worker comes back after 20 + 5 s instead of 45 + 5, so these tests wait less; what they check is the same.
QUICKER_RECOVERY = {
    "SKINSENSE_TASK_TIME_LIMIT_S": "20",
    "SKINSENSE_RECONCILE_INTERVAL_S": "5",
    "SKINSENSE_QUEUED_DEADLINE_S": "20",
}


def run_and_check(fault: Fault, data_dir: Path, tmp_path: Path) -> Outcome:
    photos = lesion_photos(data_dir, PHOTOS)
    # The target: every job answered within 2 minutes of the fault ending (a job lost with a killed
    # worker comes back through the reconciler once its deadline passed: up to a minute with the defaults).
    outcome, logs = run_fault(
        fault, photos, first_chat=FIRST_CHAT, drain_timeout_s=120, workdir=tmp_path, settings=QUICKER_RECOVERY
    )
    report = (
        f"{fault.description}: sent {outcome.sent}, answered {outcome.answered}, "
        f"duplicate replies {outcome.duplicate_replies}, wrong rows {outcome.wrong_rows}, "
        f"clinician chats an alert never reached {outcome.alerts_queued}\n" + "\n".join([*outcome.wrong_examples, logs])
    )
    assert outcome.sent == PHOTOS, report
    assert outcome.lost == 0, report
    assert outcome.duplicate_replies == 0, report
    assert outcome.wrong_rows == 0, report
    assert outcome.alerts_queued == 0, report  # every clinician alert went out (the harness waits while they do)
    return outcome


def test_bot_killed_mid_burst_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    run_and_check(Fault("bot_killed", "bot killed (kill -9) mid-burst", fault_bot_killed), data_dir, tmp_path)


def test_a_killed_worker_pool_process_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    fault = Fault("worker_child_killed", "a worker pool process killed", fault_worker_child_killed)
    run_and_check(fault, data_dir, tmp_path)


def test_a_killed_worker_main_process_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    fault = Fault("worker_main_killed", "worker main process killed, restarted", fault_worker_main_killed)
    run_and_check(fault, data_dir, tmp_path)


def test_a_redis_restart_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    run_and_check(Fault("redis_restarted", "Redis restarted", fault_redis_restarted), data_dir, tmp_path)


def test_a_429_and_5xx_storm_on_every_bot_api_method_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    storm = rate_fault(seconds=10, rate_429=0.2, rate_5xx=0.12)
    run_and_check(Fault("api_storm", "20% 429 and 12% 5xx on every method for 10 s", storm), data_dir, tmp_path)


@pytest.mark.postgres
def test_the_database_away_for_a_few_seconds_loses_no_photo(data_dir: Path, tmp_path: Path) -> None:
    fault = Fault("postgres_stopped", "PostgreSQL stopped 3 s", postgres_stopped(3), postgres=True)
    run_and_check(fault, data_dir, tmp_path)
