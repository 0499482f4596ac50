"""One clock across hosts (shared/clock.py): a process on a host whose clock is 3 s fast (its wall clock shifted
by tests/auxil/skewed_clock.c) stamps and compares on the database server's clock, not its own."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.auxil.services import child_env, postgres_database, python_command, skewed_clock_env

pytestmark = pytest.mark.postgres

READ_THE_CLOCKS = """
import json, time
from datetime import UTC, datetime
from shared.audit import utc_now
from shared.clock import CLOCK, database_now
from shared.db import get_engine
engine = get_engine()
CLOCK.measure()
print(json.dumps({
    "host_minus_database": datetime.now(UTC).timestamp() - database_now(engine).timestamp(),
    "stamp_minus_database": utc_now().timestamp() - database_now(engine).timestamp(),
}))
"""


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    with postgres_database(postgres_admin_url) as url:
        yield url


def test_a_host_whose_clock_is_3_s_fast_stamps_on_the_database_clock(database_url: str) -> None:
    env = {**child_env(database_url=database_url), **skewed_clock_env(3.0)}
    done = subprocess.run(
        python_command("-c", READ_THE_CLOCKS), env=env, capture_output=True, text=True, timeout=60, check=True
    )
    readings = json.loads(done.stdout.strip().splitlines()[-1])
    assert readings["host_minus_database"] == pytest.approx(3.0, abs=0.5), "the host's clock is skewed"
    assert abs(readings["stamp_minus_database"]) < 0.3, "yet what it stamps is the database's time"
