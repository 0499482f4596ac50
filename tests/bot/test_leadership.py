"""The leader lease (bot/leadership.py) on a migrated audit database, SQLite and PostgreSQL: one replica holds
it, another takes it only once it lapsed or was released, a restarted replica takes its own back at once, and a
leader whose lease another replica took learns that it lost it."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from bot.leadership import LeaderLease

LEASE_S = 2.0  # SQLite's clock has whole seconds


def test_one_replica_leads_and_a_standby_waits(audit_engine: Engine) -> None:
    first, second = LeaderLease(audit_engine, "a", LEASE_S), LeaderLease(audit_engine, "b", LEASE_S)
    assert first.try_acquire() and first.leading
    assert not second.try_acquire() and not second.leading
    assert first.renew()
    assert first.holder() == "a"


def test_a_restarted_replica_takes_its_own_lease_back_at_once(audit_engine: Engine) -> None:
    assert LeaderLease(audit_engine, "a", 60).try_acquire()
    assert LeaderLease(audit_engine, "a", 60).try_acquire(), "the same replica id, a new process"
    assert not LeaderLease(audit_engine, "b", 60).try_acquire()


def test_a_released_lease_goes_to_the_standby_at_once(audit_engine: Engine) -> None:
    first, second = LeaderLease(audit_engine, "a", 60), LeaderLease(audit_engine, "b", 60)
    assert first.try_acquire()
    first.release()
    assert not first.leading
    assert second.try_acquire()


def test_a_lapsed_lease_goes_to_the_standby_and_the_old_leader_learns_it_lost(audit_engine: Engine) -> None:
    first, second = LeaderLease(audit_engine, "a", LEASE_S), LeaderLease(audit_engine, "b", LEASE_S)
    assert first.try_acquire()
    deadline = time.monotonic() + 10
    while not second.try_acquire():  # the leader stopped renewing (killed, or paused)
        assert time.monotonic() < deadline, "the lease never lapsed"
        time.sleep(0.2)
    assert second.holder() == "b"
    assert not first.renew() and not first.leading, "the paused leader must stop: another replica leads"
