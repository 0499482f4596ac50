"""One clock for every host: the audit database's.

Deadlines, leases, claims and the publish-time allowance are written by one process and read by another, often
on another machine, and a few seconds of skew between hosts made the reconciler take a backlog for lost jobs.
So every time SkinSense stamps or compares is the database server's: ``now()`` is this host's clock plus its
offset from the database, measured (the server's ``clock_timestamp()`` against the middle of the round trip)
in a background thread when the process opens its database and every ``SYNC_EVERY_S`` after. Reading the time
never waits for the database: while it cannot be reached, the last offset stands. A lease is taken on the
database's own time, read at that moment (``database_now``). SQLite lives on one host: its clock is the
database's, offset zero.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

SYNC_EVERY_S = 30.0
RETRY_SYNC_S = 5.0  # after a failed measurement
SKEW_WORTH_TELLING_S = 1.0


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def database_now(engine: Engine) -> datetime:
    """The database server's time, read now (one round trip): PostgreSQL's clock_timestamp(); SQLite's host's."""
    if engine.dialect.name == "sqlite":
        return datetime.now(UTC)
    with engine.connect() as connection:
        value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
    return _as_utc(value)


class DatabaseClock:
    """This process's reading of the database's clock (see the module)."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._offset_s = 0.0
        self._thread_pid: int | None = None  # the process whose thread measures (none survives a fork)
        self._lock = threading.Lock()

    @property
    def offset_s(self) -> float:
        """Seconds to add to this host's clock to read the database's."""
        return self._offset_s

    def follow(self, engine: Engine) -> None:
        """Keep to ``engine``'s database from now on (the process's audit database)."""
        if engine.dialect.name == "sqlite":
            return
        with self._lock:
            self._engine = engine
        self._ensure_measuring()

    def now(self) -> datetime:
        self._ensure_measuring()
        return datetime.now(UTC) + timedelta(seconds=self._offset_s)

    def measure(self) -> float:
        """Measure the offset now (one round trip); raises if the database cannot be reached."""
        engine = self._engine
        if engine is None:
            return self._offset_s
        sent = time.time()
        server = database_now(engine)
        received = time.time()
        offset = server.timestamp() - (sent + received) / 2
        if abs(offset - self._offset_s) > SKEW_WORTH_TELLING_S:
            log.warning("this host's clock is %.1f s off the database's: SkinSense keeps to the database's", -offset)
        self._offset_s = offset
        return offset

    def _ensure_measuring(self) -> None:
        if self._engine is None or self._thread_pid == os.getpid():
            return
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
        threading.Thread(target=self._measure_forever, name="database-clock", daemon=True).start()

    def _measure_forever(self) -> None:
        pid = os.getpid()
        while self._thread_pid == pid:
            try:
                self.measure()
                pause = SYNC_EVERY_S
            except SQLAlchemyError as error:
                log.debug("database clock not measured (%s); the last offset stands", type(error).__name__)
                pause = RETRY_SYNC_S
            time.sleep(pause)


CLOCK = DatabaseClock()


def now() -> datetime:
    """The time on the database's clock, as this process reads it (see the module)."""
    return CLOCK.now()
