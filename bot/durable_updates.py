"""Durable intake: no update is lost when the bot is killed at any moment, and each is handled once by update_id.

python-telegram-bot hands every update it receives to ``Application.update_queue.put``: in polling mode the
getUpdates offset that tells Telegram the update arrived is sent only with the *next* getUpdates, after ``put``
returned; in webhook mode the 200 is answered only after ``put`` returned. So ``DurableUpdateQueue.put`` first
records the update in the audit database (``inbound_updates``, sealed: it holds chat ids and texts), and only
then queues it in memory; an update already handled is skipped. If the database cannot be reached, ``put``
raises a ``TelegramError`` after a few tries: the polling loop backs off and fetches the same updates again
(their offset unconfirmed), a webhook answers 500 and Telegram delivers again.

``DurableApplication.process_update`` marks the update processed after its handlers ran (its sealed payload is
erased then). When a handler failed for a reason that may pass (the database or Telegram unreachable), the
update stays unprocessed and is handled again with backoff; at start-up, and every minute for those whose tries
ran out, every unprocessed update is handed over again (one still unhandled after 6 hours is given up).
The handlers are idempotent for such a replay (photo intake by update_id, consent and questionnaire by state).
Processed rows keep only update_id and the times, for a day, to recognise a redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col, select
from telegram import Update
from telegram.error import RetryAfter, TelegramError
from telegram.ext import Application

from shared.audit import InboundUpdate, utc_now
from shared.sealing import Sealer
from shared.telegram_calls import NotDelivered, OutcomeUnknown

log = logging.getLogger(__name__)

KEEP_PROCESSED = timedelta(days=1)
KEEP_UNHANDLED = timedelta(hours=6)  # an update still failing after this is given up (logged), not handled late
REPLAY_EVERY_S = 60.0  # updates whose tries ran out (an outage of minutes) are handed over again this often
RECORD_TRIES = 4  # then put gives up for now: Telegram keeps the update and offers it again
MAX_HANDLING_TRIES = 12
MAX_BACKOFF_S = 30.0


class UpdateNotRecorded(TelegramError):
    """The update could not be recorded (database unreachable): not acknowledged, Telegram will offer it again.
    A TelegramError so that PTB's polling loop backs off and retries instead of stopping."""


class Recorded(enum.Enum):
    NEW = "new"
    PENDING = "pending"  # recorded earlier, not yet handled (a redelivery, or a replay after a restart)
    PROCESSED = "processed"


def may_pass(error: BaseException) -> bool:
    """A failure worth handling the update again later: the database, the broker or Telegram was unreachable, or
    a call's answer was lost (the handlers go on from where they stopped; a send whose answer was lost may show
    twice, which beats a patient left without an answer)."""
    transient = (
        OperationalError,
        InterfaceError,
        PoolTimeout,
        BrokerUnavailable,
        RetryAfter,
        NotDelivered,
        OutcomeUnknown,
    )
    if isinstance(error, transient):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class InboundUpdateStore:
    """The ``inbound_updates`` table: synchronous, called from the bot's event loop through a thread."""

    def __init__(self, engine: Engine, sealer: Sealer) -> None:
        self.engine = engine
        self.sealer = sealer

    def record(self, update_id: int, payload: dict[str, Any]) -> Recorded:
        with Session(self.engine) as session:
            existing = session.get(InboundUpdate, update_id)
            if existing is None:
                session.add(InboundUpdate(update_id=update_id, sealed_update=self.sealer.seal(payload)))
                try:
                    session.commit()
                    return Recorded.NEW
                except IntegrityError:  # recorded meanwhile by a delivery of the same update
                    session.rollback()
                    existing = session.get(InboundUpdate, update_id)
                    if existing is None:
                        raise
            return Recorded.PROCESSED if existing.processed_at is not None else Recorded.PENDING

    def mark_processed(self, update_id: int) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(InboundUpdate)
                .where(col(InboundUpdate.update_id) == update_id)
                .values(processed_at=utc_now(), sealed_update=None)
            )
            session.commit()

    def count_attempt(self, update_id: int) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(InboundUpdate)
                .where(col(InboundUpdate.update_id) == update_id)
                .values(attempts=col(InboundUpdate.attempts) + 1)
            )
            session.commit()

    def unprocessed(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every update recorded and not yet handled, oldest first, unsealed."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(InboundUpdate)
                .where(col(InboundUpdate.processed_at).is_(None))
                .order_by(col(InboundUpdate.update_id))
            ).all()
        for row in rows:
            if row.sealed_update is not None:
                yield row.update_id, self.sealer.unseal_dict(row.sealed_update)

    def give_up_stale(self, older_than: timedelta = KEEP_UNHANDLED) -> int:
        """Updates recorded longer ago than ``older_than`` and never handled are dropped with their sealed content:
        handled so late they would start work the patient no longer waits for (a day-old photo analysed anew)."""
        with Session(self.engine) as session:
            stale = (col(InboundUpdate.processed_at).is_(None)) & (
                col(InboundUpdate.received_at) < utc_now() - older_than
            )
            result = session.execute(
                update(InboundUpdate).where(stale).values(processed_at=utc_now(), sealed_update=None)
            )
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    def forget_processed(self, older_than: timedelta = KEEP_PROCESSED) -> int:
        with Session(self.engine) as session:
            result = session.execute(
                delete(InboundUpdate).where(col(InboundUpdate.processed_at) < utc_now() - older_than)
            )
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)


class DurableUpdateQueue(asyncio.Queue[object]):
    """The Application's update queue: an update is recorded durably before ``put`` returns (see the module)."""

    def __init__(self, store: InboundUpdateStore, *, record_tries: int = RECORD_TRIES) -> None:
        super().__init__()
        self.store = store
        self.record_tries = record_tries
        self.in_flight: set[int] = set()  # update ids queued or being handled in this process

    async def put(self, item: object) -> None:
        if not isinstance(item, Update):  # PTB's own signals (the stop signal)
            await super().put(item)
            return
        recorded = await self._record(item)
        if recorded is Recorded.PROCESSED or item.update_id in self.in_flight:
            log.info("update %d already %s: skipped", item.update_id, recorded.value)
            return
        self.hand_over(item)

    def hand_over(self, update: Update) -> None:
        """Queue an update that is already recorded (a new one, a redelivery, a replay or a retry)."""
        self.in_flight.add(update.update_id)
        self.put_nowait(update)

    async def _record(self, update: Update) -> Recorded:
        for attempt in range(1, self.record_tries + 1):
            try:
                return await asyncio.to_thread(self.store.record, update.update_id, update.to_dict())
            except (OperationalError, InterfaceError, PoolTimeout, DBAPIError) as error:
                log.warning("update %d not recorded (%s), try %d", update.update_id, type(error).__name__, attempt)
                if attempt < self.record_tries:
                    await asyncio.sleep(0.5 * 2**attempt * random.uniform(0.8, 1.2))
        raise UpdateNotRecorded("the update could not be recorded; Telegram will offer it again")


class DurableApplication(Application[Any, Any, Any, Any, Any, Any]):
    """Marks each update processed after its handlers ran, handles again those that failed for a reason that
    may pass, and replays at start-up what a previous run recorded and did not handle."""

    def __init__(self, *, inbound: InboundUpdateStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inbound = inbound
        self._failed_for_now: set[int] = set()
        self._tries: dict[int, int] = {}
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def durable_queue(self) -> DurableUpdateQueue:
        queue = self.update_queue
        assert isinstance(queue, DurableUpdateQueue), "build the application with a DurableUpdateQueue"
        return queue

    async def start(self) -> None:
        await super().start()
        self._housekeeping = asyncio.create_task(self._replay_then_tidy())

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await super().stop()

    async def process_update(self, update: object) -> None:
        if not isinstance(update, Update):
            await super().process_update(update)
            return
        update_id = update.update_id
        self._failed_for_now.discard(update_id)
        try:
            await super().process_update(update)  # handlers' exceptions end in process_error, not here
        except BaseException:  # cancelled by a shutdown: left unprocessed, replayed at the next start
            self.durable_queue.in_flight.discard(update_id)
            raise
        if update_id in self._failed_for_now:
            self._failed_for_now.discard(update_id)
            self._schedule_retry(update)
        else:
            self._tries.pop(update_id, None)
            await self._mark_processed(update_id)

    async def process_error(self, update: object | None, error: Exception, *args: Any, **kwargs: Any) -> bool:
        if isinstance(update, Update) and may_pass(error):
            self._failed_for_now.add(update.update_id)
        return await super().process_error(update, error, *args, **kwargs)

    def _schedule_retry(self, update: Update) -> None:
        tries = self._tries.get(update.update_id, 0) + 1
        self._tries[update.update_id] = tries
        if tries >= MAX_HANDLING_TRIES:  # left unprocessed: handed over again by the housekeeping (REPLAY_EVERY_S)
            log.error("update %d still failing after %d tries; handed over again later", update.update_id, tries)
            self.durable_queue.in_flight.discard(update.update_id)
            self._tries.pop(update.update_id, None)
            return
        delay = min(2.0**tries, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
        log.warning("update %d: handling failed for now; again in %.1f s", update.update_id, delay)

        async def again() -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):  # only a count for the audit; the retry matters
                await asyncio.to_thread(self.inbound.count_attempt, update.update_id)
            self.durable_queue.put_nowait(update)

        self.create_task(again(), name=f"update-retry-{update.update_id}")

    async def _mark_processed(self, update_id: int) -> None:
        for attempt in range(1, 6):
            try:
                await asyncio.to_thread(self.inbound.mark_processed, update_id)
                break
            except Exception as error:  # replayed at the next start if never marked: the handlers are idempotent
                log.warning("update %d: not marked processed (%s)", update_id, type(error).__name__)
                await asyncio.sleep(attempt)
        self.durable_queue.in_flight.discard(update_id)

    async def _replay_then_tidy(self) -> None:
        delay = 1.0
        while True:
            try:
                replayed = await self._replay()
                forgotten = await asyncio.to_thread(self.inbound.forget_processed)
                log.info("start-up: %d unhandled updates replayed, %d old ones forgotten", replayed, forgotten)
                break
            except Exception as error:
                log.warning("replay of unhandled updates failed (%s); again in %.0f s", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        tidied_at = time.monotonic()
        while True:
            # Updates whose tries ran out during a longer outage are handed over again, not left for a restart;
            # those failing for hours are given up. Processed rows are kept a day, to recognise redeliveries.
            await asyncio.sleep(REPLAY_EVERY_S)
            with contextlib.suppress(Exception):
                given_up = await asyncio.to_thread(self.inbound.give_up_stale)
                if given_up:
                    log.error("%d updates still unhandled after %s: given up", given_up, KEEP_UNHANDLED)
                replayed = await self._replay()
                if replayed:
                    log.info("%d unhandled updates handed over again", replayed)
                if time.monotonic() - tidied_at > 3600:
                    await asyncio.to_thread(self.inbound.forget_processed)
                    tidied_at = time.monotonic()

    async def _replay(self) -> int:
        pending = await asyncio.to_thread(lambda: list(self.inbound.unprocessed()))
        queue = self.durable_queue
        replayed = 0
        for update_id, payload in pending:
            if update_id in queue.in_flight:
                continue
            update = Update.de_json(payload, self.bot)
            queue.hand_over(update)
            replayed += 1
        return replayed
