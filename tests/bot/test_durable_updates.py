"""The durable update queue on its own, on a real migrated database: an update is recorded sealed before
``put`` returns, a redelivery is not handled twice, a processed update keeps no payload, and with the database
unreachable ``put`` refuses (so Telegram keeps the update) instead of dropping it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from telegram import Update

from bot.durable_updates import DurableUpdateQueue, InboundUpdateStore, UpdateNotRecorded, update_key
from shared.audit import InboundUpdate
from shared.config import Settings, parse_keys
from shared.db import build_engine
from shared.sealing import Sealer
from tests.auxil.database import migrated_engine
from tests.auxil.services import free_port

CHAT_ID = 987654321


BOT_ID = "4242"


def an_update(update_id: int, *, message_id: int = 5, date: int = 1795660000) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "date": date,
                "chat": {"id": CHAT_ID, "type": "private", "first_name": "Patient"},
                "from": {"id": CHAT_ID, "is_bot": False, "first_name": "Patient"},
                "text": "a private word",
            },
        },
        None,
    )


def a_store(url: str, claimant: str = "bot", claim_s: float = 30.0) -> InboundUpdateStore:
    sealer = Sealer(parse_keys(Settings().delivery_key))
    return InboundUpdateStore(build_engine(url), sealer, claimant=claimant, claim_s=claim_s)


def test_an_update_is_recorded_sealed_and_handed_over_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    migrated_engine(url)
    store = a_store(url)
    queue = DurableUpdateQueue(store, bot_id=BOT_ID)

    async def deliver_three_times() -> list[object]:
        for _ in range(3):  # a redelivery, e.g. the getUpdates offset not confirmed before a restart
            await queue.put(an_update(41))
        return [queue.get_nowait() for _ in range(queue.qsize())]

    handed_over = asyncio.run(deliver_three_times())
    assert [u.update_id for u in handed_over if isinstance(u, Update)] == [41]
    with Session(store.engine) as session:
        row = session.exec(select(InboundUpdate)).one()
    assert row.sealed_update is not None and str(CHAT_ID) not in row.sealed_update
    assert "a private word" not in row.sealed_update
    key = update_key(BOT_ID, an_update(41).to_dict())
    assert [(k, payload["message"]["text"]) for k, payload in store.unprocessed(BOT_ID)] == [(key, "a private word")]

    store.mark_processed(key)
    queue.in_flight.discard(key)
    asyncio.run(queue.put(an_update(41)))
    assert queue.qsize() == 0, "an update already handled is not handled again"
    with Session(store.engine) as session:
        row = session.exec(select(InboundUpdate)).one()
    assert row.sealed_update is None and row.processed_at is not None
    assert list(store.unprocessed(BOT_ID)) == []
    assert store.forget_processed(older_than=timedelta(0)) == 1


def test_an_update_id_seen_before_with_new_content_is_a_new_update(tmp_path: Path) -> None:
    """Update ids start again with a new token or a fresh Bot API server (and at random after a quiet week): the
    first messages after such a restart carry ids already processed, and must be handled, not skipped. The same
    id from another bot is another update too; a true redelivery (same content) is still skipped."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    migrated_engine(url)
    store = a_store(url)
    queue = DurableUpdateQueue(store, bot_id=BOT_ID)
    before_restart = an_update(1, message_id=5, date=1795660000)
    after_restart = an_update(1, message_id=1, date=1795660900)

    async def deliver() -> list[object]:
        await queue.put(before_restart)
        handed = [queue.get_nowait()]
        key = queue.key(before_restart)
        store.mark_processed(key)
        queue.in_flight.discard(key)
        await queue.put(before_restart)  # a redelivery: skipped
        await queue.put(after_restart)  # the same id, a new message: handled
        await DurableUpdateQueue(store, bot_id="777").put(before_restart)  # another bot's update 1
        return handed + [queue.get_nowait() for _ in range(queue.qsize())]

    handed_over = asyncio.run(deliver())
    assert [u.message.message_id for u in handed_over if isinstance(u, Update) and u.message] == [5, 1]
    with Session(store.engine) as session:
        assert len(session.exec(select(InboundUpdate)).all()) == 3


def test_an_update_unhandled_for_hours_is_given_up_with_its_content_and_a_recent_one_is_kept(tmp_path: Path) -> None:
    """An update that kept failing (an outage of hours) is not handled a day late as if new: it is given up,
    and its sealed content (names, texts) goes with it; one recorded recently stays to be handed over again."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    migrated_engine(url)
    store = a_store(url)
    old_key, new_key = (update_key(BOT_ID, an_update(n).to_dict()) for n in (51, 52))
    store.record(old_key, an_update(51).to_dict())
    store.record(new_key, an_update(52).to_dict())
    with Session(store.engine) as session:
        old = session.get(InboundUpdate, old_key)
        assert old is not None
        old.received_at = old.received_at - timedelta(hours=7)
        session.add(old)
        session.commit()
    assert store.give_up_stale() == 1
    assert [key for key, _ in store.unprocessed(BOT_ID)] == [new_key]
    with Session(store.engine) as session:
        given_up = session.get(InboundUpdate, old_key)
    assert given_up is not None and given_up.sealed_update is None and given_up.processed_at is not None


def test_with_the_database_unreachable_put_refuses_instead_of_dropping_the_update() -> None:
    store = a_store(f"postgresql://skinsense@127.0.0.1:{free_port()}/nowhere")
    queue = DurableUpdateQueue(store, bot_id=BOT_ID, record_tries=2)
    with pytest.raises(UpdateNotRecorded):
        asyncio.run(queue.put(an_update(42)))
    assert queue.qsize() == 0 and not queue.in_flight


def test_an_update_is_handled_by_the_replica_that_claimed_it_and_taken_over_only_once_its_claim_lapsed(
    tmp_path: Path,
) -> None:
    """Two bot replicas on one database (a leader that lost its lease still finishing, the new one replaying):
    the update goes to the replica that recorded it; the other neither takes it from a redelivery nor from its
    replay while the claim holds (and is renewed), and takes it over once the claim lapsed (its replica died)."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    migrated_engine(url)
    first, second = a_store(url, "replica-a", claim_s=1.0), a_store(url, "replica-b", claim_s=1.0)
    first_queue, second_queue = DurableUpdateQueue(first, bot_id=BOT_ID), DurableUpdateQueue(second, bot_id=BOT_ID)
    key = update_key(BOT_ID, an_update(51).to_dict())

    asyncio.run(first_queue.put(an_update(51)))
    asyncio.run(second_queue.put(an_update(51)))  # both fetched it (two leaders for a moment)
    assert first_queue.qsize() == 1 and second_queue.qsize() == 0, "only the replica that recorded it handles it"
    assert list(second.unprocessed(BOT_ID)) == [] and not second.take(key), "not replayed by the other one"

    time.sleep(0.7)
    first.renew({key})  # replica-a still works on it
    time.sleep(0.7)
    assert not second.take(key), "a renewed claim still holds after its first length"
    assert [k for k, _ in first.unprocessed(BOT_ID)] == [key], "the claimant itself may replay it (a restart)"

    time.sleep(1.2)  # replica-a died: its claim lapses
    assert [k for k, _ in second.unprocessed(BOT_ID)] == [key]
    assert second.take(key), "taken over once the claim lapsed"
    assert not first.take(key), "...and then it is the new claimant's alone"
    first.renew({key})
    assert not first.take(key), "a renewal by the old claimant does not take it back"
    second.mark_processed(key)
    assert not second.take(key) and list(second.unprocessed(BOT_ID)) == []
