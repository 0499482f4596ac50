"""A bot or a worker whose delivery key cannot open what the deployment sealed refuses to serve: the bot does
not start (it would seal what no worker can open), the worker reports not ready and says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.fernet import Fernet

from shared.config import Settings
from shared.sealing import KEY_MISMATCH, Sealer, delivery_key_problem
from tests.auxil.database import migrated_engine
from tests.auxil.services import child_env, python_command
from worker.celery_app import worker_readiness


def test_a_bot_with_another_key_does_not_start_and_says_why(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    assert delivery_key_problem(migrated_engine(database_url), Sealer([Fernet.generate_key().decode()])) is None
    env = child_env(
        telegram_token="5151:key-test-token",
        telegram_api_url="http://127.0.0.1:1",  # never reached: the check comes first
        database_url=database_url,
        delivery_key=Fernet.generate_key().decode(),
        bot_metrics_port=0,
    )
    finished = subprocess.run(
        python_command("-m", "skinsense.cli", "bot"), env=env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode != 0
    assert KEY_MISMATCH in finished.stderr + finished.stdout


def test_a_worker_with_another_key_reports_not_ready(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    assert delivery_key_problem(migrated_engine(database_url), Sealer([Fernet.generate_key().decode()])) is None
    other = Settings(database_url=database_url, delivery_key=Fernet.generate_key().decode())  # type: ignore[arg-type]
    assert KEY_MISMATCH in worker_readiness(other)()
