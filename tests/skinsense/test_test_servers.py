"""The tests run on servers of their own: never the machine's Redis or PostgreSQL, and nothing is left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest


def test_redis_is_our_own_on_a_free_port(redis_url: str) -> None:
    assert urlsplit(redis_url).port not in (None, 6379)


@pytest.mark.postgres
def test_postgres_is_a_throwaway_cluster_in_a_temporary_folder(postgres_admin_url: str) -> None:
    assert urlsplit(postgres_admin_url).port not in (None, 5432)
    with psycopg.connect(postgres_admin_url) as connection:
        data_directory = connection.execute("SHOW data_directory").fetchone()
    assert data_directory is not None
    assert Path(data_directory[0]).parent == Path(tempfile.gettempdir())
    assert Path(data_directory[0]).name.startswith("skinsense-test-pg-")
