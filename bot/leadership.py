"""One bot leads: any number of bot processes may run (a standby on a second machine), and only the holder of
the leader lease polls Telegram (or serves the webhook) and reports ready. Two pollers of one token would get
409 Conflict from Telegram and fetch the same updates over and over.

The lease is a row of the audit database (``leases``), which every bot needs anyway (each update is recorded
there before Telegram is told it arrived): the replica's id and until when it holds, on the database's own
clock (no host's clock counts). Its holder renews it at a third of its length; a standby tries to take it at
the same pace and leads once it lapsed, so a killed leader is replaced within one lease. A replica that
restarts (the supervisor of `skinsense up`, a container's restart policy) keeps its id (the host name, or
SKINSENSE_BOT_REPLICA_ID), so it takes its own lease back at once instead of waiting for it to lapse.

A leader that finds the lease held by another replica has lost it (it was paused, or away from the database,
longer than the lease): it stops at once, and its supervisor starts it again as a standby. In that window two
replicas may lead for up to a third of a lease; an update both fetched is recorded once (by its update key) and
handled by the replica that claimed its row (bot/durable_updates.py), never by both.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col

from shared.audit import Lease
from shared.clock import database_now
from shared.config import Settings
from shared.db import get_engine

log = logging.getLogger(__name__)

BOT_LEASE = "bot"


def replica_id_of(settings: Settings) -> str:
    """This bot replica's id: SKINSENSE_BOT_REPLICA_ID, or the host's name (a container's, under compose)."""
    return settings.bot_replica_id or socket.gethostname()


class LeaderLease:
    def __init__(self, engine: Engine, replica_id: str, lease_s: float, name: str = BOT_LEASE) -> None:
        self.engine = engine
        self.replica_id = replica_id
        self.lease = timedelta(seconds=lease_s)
        self.name = name
        self.leading = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LeaderLease:
        return cls(get_engine(settings.database_url), replica_id_of(settings), settings.bot_leader_lease_s)

    @property
    def interval_s(self) -> float:
        return self.lease.total_seconds() / 3

    def _take(self, *, only_if_mine: bool) -> bool:
        """Hold the lease for another full length if this replica holds it (or, unless ``only_if_mine``, if it is
        free or has lapsed); whether it now holds it."""
        now = database_now(self.engine)
        held_by_me = col(Lease.holder) == self.replica_id
        condition = held_by_me if only_if_mine else or_(held_by_me, col(Lease.expires_at) < now)
        with self.engine.begin() as connection:
            taken = connection.execute(
                update(Lease)
                .where(col(Lease.name) == self.name)
                .where(condition)
                .values(holder=self.replica_id, expires_at=now + self.lease)
            ).rowcount
        if taken == 0 and not only_if_mine:
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        insert(Lease).values(name=self.name, holder=self.replica_id, expires_at=now + self.lease)
                    )
                taken = 1
            except IntegrityError:  # the row exists: another replica holds the lease
                taken = 0
        self.leading = taken == 1
        return self.leading

    def try_acquire(self) -> bool:
        return self._take(only_if_mine=False)

    def renew(self) -> bool:
        """False when another replica took the lease: this one no longer leads."""
        return self._take(only_if_mine=True)

    def release(self) -> None:
        """Let a standby lead at once (a clean stop)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    update(Lease)
                    .where(col(Lease.name) == self.name, col(Lease.holder) == self.replica_id)
                    .values(expires_at=database_now(self.engine) - self.lease)
                )
        except SQLAlchemyError:
            pass  # it lapses on its own
        self.leading = False

    def holder(self) -> str | None:
        with Session(self.engine) as session:
            lease = session.get(Lease, self.name)
            return None if lease is None else lease.holder

    def wait_until_leading(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block as a standby until this replica holds the lease."""
        told = False
        while True:
            try:
                if self.try_acquire():
                    log.info("bot replica %s leads", self.replica_id)
                    return
                if not told:
                    log.info("bot replica %s is a standby: another replica leads", self.replica_id)
                    told = True
            except SQLAlchemyError as error:
                log.warning("leader lease: the database is unavailable (%s); trying again", type(error).__name__)
            sleep(self.interval_s)

    def keep(self, on_lost: Callable[[], None]) -> threading.Event:
        """Renew the lease in a thread until the returned event is set; ``on_lost`` runs once if another replica
        took it. While the database cannot be reached this replica keeps leading (it cannot tell)."""
        stop = threading.Event()

        def renew_forever() -> None:
            while not stop.wait(self.interval_s):
                try:
                    if not self.renew():
                        log.error("bot replica %s lost the leader lease: stopping", self.replica_id)
                        on_lost()
                        return
                except SQLAlchemyError as error:
                    log.warning("leader lease not renewed (%s): still leading", type(error).__name__)

        threading.Thread(target=renew_forever, name="leader-lease", daemon=True).start()
        return stop
