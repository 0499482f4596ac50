"""Durable intake: no update is lost when the bot is killed at any moment, and each is handled once (by its key).

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
The handlers are idempotent for such a replay (photo intake by update key, consent and questionnaire by state).
Processed rows keep only the update's key and the times, for a day, to recognise a redelivery.

An update is recognised by ``update_key``: the bot's id, the update id and the update's own content (a message's
chat, id and dates; a press's query id). Update ids are not the bot's to trust across sources: they start again
with a new token or a local Bot API server started afresh, and Telegram picks a random next id after a quiet
week; keyed by the id alone, every new message up to the old run's last id was skipped as "already processed".
A true redelivery carries the same content, so it still matches.

Any number of bot replicas may share the table (bot/leadership.py: one leads at a time, but a leader that lost
its lease may still be finishing updates). Each update is handled under a claim on its row: the replica that
records it claims it for ``claim_s`` (the leader lease's length, on the database's clock, shared/clock.py) and
renews the claims of every update it still has in hand as often as the lease; a replay takes only rows whose
claim lapsed (or its own, after a restart). So a dead leader's updates are taken over once its claims lapse,
and no update is handled by two replicas at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import random
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from typing import Any

from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import ColumnElement, delete, or_, update
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
    CLAIMED = "claimed by another replica"  # that replica is handling it


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


LEGACY_KEY_PREFIX = "legacy:"  # rows recorded before keys existed (migration 0010): given their key when replayed


def bot_id_of(token: str) -> str:
    """The bot's id: the part of its token before the colon (Telegram's token format)."""
    return token.split(":", 1)[0]


def _identity(payload: Mapping[str, Any]) -> object:
    """What makes one update itself, apart from its id: the parts Telegram repeats exactly on a redelivery."""
    kinds = sorted(key for key in payload if key != "update_id")
    if not kinds:
        return None
    kind = kinds[0]
    content = payload[kind]
    if not isinstance(content, Mapping):
        return [kind, content]
    if kind == "callback_query" or ("id" in content and "chat" not in content):
        return [kind, content.get("id")]  # presses and other queries carry an id unique to them
    chat = content.get("chat")
    if isinstance(chat, Mapping) and "message_id" in content:
        return [kind, chat.get("id"), content["message_id"], content.get("date"), content.get("edit_date")]
    return [kind, json.dumps(content, sort_keys=True, default=str)]


def update_key(bot_id: str, payload: Mapping[str, Any]) -> str:
    """The key one update is recorded, handled and deduplicated by: the bot, the update id and a digest of the
    update's own content (see the module). ``payload``: the update as Telegram sent it (``Update.to_dict()``)."""
    identity = json.dumps(_identity(payload), sort_keys=True, default=str).encode()
    return f"{bot_id}:{payload['update_id']}:{hashlib.sha256(identity).hexdigest()[:24]}"


def key_of(update: Update) -> str:
    """``update_key`` of an update handed to a handler (its bot is set by PTB)."""
    return update_key(bot_id_of(update.get_bot().token), update.to_dict())


class InboundUpdateStore:
    """The ``inbound_updates`` table: synchronous, called from the bot's event loop through a thread.
    ``claimant``: this bot replica's id; ``claim_s``: how long a claim holds unless renewed (see the module)."""

    def __init__(self, engine: Engine, sealer: Sealer, *, claimant: str = "bot", claim_s: float = 30.0) -> None:
        self.engine = engine
        self.sealer = sealer
        self.claimant = claimant
        self.claim = timedelta(seconds=claim_s)

    def _claimable(self) -> ColumnElement[bool]:
        """Rows this replica may handle: unhandled, and unclaimed, claimed by it, or with a claim that lapsed."""
        return (col(InboundUpdate.processed_at).is_(None)) & or_(
            col(InboundUpdate.claimed_until).is_(None),
            col(InboundUpdate.claimed_by) == self.claimant,
            col(InboundUpdate.claimed_until) < utc_now(),
        )

    def take(self, key: str) -> bool:
        """Claim one update for this replica; False if it is handled, or another replica's claim still holds."""
        with Session(self.engine) as session:
            taken = session.execute(
                update(InboundUpdate)
                .where(col(InboundUpdate.update_key) == key, self._claimable())
                .values(claimed_by=self.claimant, claimed_until=utc_now() + self.claim)
            )
            session.commit()
        return bool(getattr(taken, "rowcount", 0))

    def renew(self, keys: Collection[str]) -> None:
        """This replica still works on ``keys``: their claims hold for another ``claim_s``."""
        if not keys:
            return
        with Session(self.engine) as session:
            session.execute(
                update(InboundUpdate)
                .where(
                    col(InboundUpdate.update_key).in_(list(keys)),
                    col(InboundUpdate.claimed_by) == self.claimant,
                    col(InboundUpdate.processed_at).is_(None),
                )
                .values(claimed_until=utc_now() + self.claim)
            )
            session.commit()

    def record(self, key: str, payload: dict[str, Any]) -> Recorded:
        with Session(self.engine) as session:
            existing = session.get(InboundUpdate, key)
            if existing is None:
                row = InboundUpdate(
                    update_key=key,
                    update_id=payload["update_id"],
                    sealed_update=self.sealer.seal(payload),
                    claimed_by=self.claimant,
                    claimed_until=utc_now() + self.claim,
                )
                session.add(row)
                try:
                    session.commit()
                    return Recorded.NEW
                except IntegrityError:  # recorded meanwhile by a delivery of the same update
                    session.rollback()
                    existing = session.get(InboundUpdate, key)
                    if existing is None:
                        raise
            if existing.processed_at is not None:
                return Recorded.PROCESSED
        return Recorded.PENDING if self.take(key) else Recorded.CLAIMED

    def mark_processed(self, key: str) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(InboundUpdate)
                .where(col(InboundUpdate.update_key) == key)
                .values(processed_at=utc_now(), sealed_update=None)
            )
            session.commit()

    def count_attempt(self, key: str) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(InboundUpdate)
                .where(col(InboundUpdate.update_key) == key)
                .values(attempts=col(InboundUpdate.attempts) + 1)
            )
            session.commit()

    def unprocessed(self, bot_id: str, *, skip: Collection[str] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every update recorded, not yet handled and not claimed by another replica, oldest first, unsealed, with
        its key (a row recorded before keys existed is given its key here, so that marking it processed finds
        it); not those in ``skip`` (in hand already). Claim each with ``take`` before handling it."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(InboundUpdate)
                .where(self._claimable())
                .order_by(col(InboundUpdate.received_at), col(InboundUpdate.update_id))
            ).all()
        for row in rows:
            if row.sealed_update is None or row.update_key in skip:
                continue
            payload = self.sealer.unseal_dict(row.sealed_update)
            key = row.update_key
            if key.startswith(LEGACY_KEY_PREFIX):
                key = update_key(bot_id, payload)
                with Session(self.engine) as session:
                    session.execute(
                        update(InboundUpdate)
                        .where(col(InboundUpdate.update_key) == row.update_key)
                        .values(update_key=key)
                    )
                    session.commit()
            yield key, payload

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

    def __init__(self, store: InboundUpdateStore, *, bot_id: str, record_tries: int = RECORD_TRIES) -> None:
        super().__init__()
        self.store = store
        self.bot_id = bot_id
        self.record_tries = record_tries
        self.in_flight: set[str] = set()  # keys of the updates queued or being handled in this process

    def key(self, update: Update) -> str:
        return update_key(self.bot_id, update.to_dict())

    async def put(self, item: object) -> None:
        if not isinstance(item, Update):  # PTB's own signals (the stop signal)
            await super().put(item)
            return
        key = self.key(item)
        recorded = await self._record(item, key)
        if recorded in (Recorded.PROCESSED, Recorded.CLAIMED) or key in self.in_flight:
            log.info("update %d already %s: skipped", item.update_id, recorded.value)
            return
        self.hand_over(item, key)

    def hand_over(self, update: Update, key: str) -> None:
        """Queue an update that is already recorded (a new one, a redelivery, a replay or a retry)."""
        self.in_flight.add(key)
        self.put_nowait(update)

    async def _record(self, update: Update, key: str) -> Recorded:
        for attempt in range(1, self.record_tries + 1):
            try:
                return await asyncio.to_thread(self.store.record, key, update.to_dict())
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
        self._failed_for_now: set[str] = set()  # update keys
        self._tries: dict[str, int] = {}
        self._resting: dict[str, float] = {}  # update key -> when (monotonic) its tries, run out, may start again
        self._background: list[asyncio.Task[None]] = []

    @property
    def durable_queue(self) -> DurableUpdateQueue:
        queue = self.update_queue
        assert isinstance(queue, DurableUpdateQueue), "build the application with a DurableUpdateQueue"
        return queue

    async def start(self) -> None:
        await super().start()
        self._background = [
            asyncio.create_task(self._replay_then_tidy()),
            asyncio.create_task(self._keep_claims()),
        ]

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    async def process_update(self, update: object) -> None:
        if not isinstance(update, Update):
            await super().process_update(update)
            return
        key = self.durable_queue.key(update)
        self._failed_for_now.discard(key)
        try:
            await super().process_update(update)  # handlers' exceptions end in process_error, not here
        except BaseException:  # cancelled by a shutdown: left unprocessed, replayed at the next start
            self.durable_queue.in_flight.discard(key)
            raise
        if key in self._failed_for_now:
            self._failed_for_now.discard(key)
            self._schedule_retry(update, key)
        else:
            self._tries.pop(key, None)
            await self._mark_processed(update.update_id, key)

    async def process_error(self, update: object | None, error: Exception, *args: Any, **kwargs: Any) -> bool:
        if isinstance(update, Update) and may_pass(error):
            self._failed_for_now.add(self.durable_queue.key(update))
        return await super().process_error(update, error, *args, **kwargs)

    def _schedule_retry(self, update: Update, key: str) -> None:
        tries = self._tries.get(key, 0) + 1
        self._tries[key] = tries
        if tries >= MAX_HANDLING_TRIES:  # left unprocessed: handed over again by the housekeeping (REPLAY_EVERY_S)
            log.error("update %d still failing after %d tries; handed over again later", update.update_id, tries)
            self._resting[key] = time.monotonic() + REPLAY_EVERY_S
            self.durable_queue.in_flight.discard(key)
            self._tries.pop(key, None)
            return
        delay = min(2.0**tries, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
        log.warning("update %d: handling failed for now; again in %.1f s", update.update_id, delay)

        async def again() -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):  # only a count for the audit; the retry matters
                await asyncio.to_thread(self.inbound.count_attempt, key)
            self.durable_queue.put_nowait(update)

        self.create_task(again(), name=f"update-retry-{update.update_id}")

    async def _mark_processed(self, update_id: int, key: str) -> None:
        for attempt in range(1, 6):
            try:
                await asyncio.to_thread(self.inbound.mark_processed, key)
                break
            except Exception as error:  # replayed at the next start if never marked: the handlers are idempotent
                log.warning("update %d: not marked processed (%s)", update_id, type(error).__name__)
                await asyncio.sleep(attempt)
        self.durable_queue.in_flight.discard(key)

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
            # As often as a claim lasts: a dead leader's updates are taken over soon after its claims lapse.
            await asyncio.sleep(min(REPLAY_EVERY_S, self.inbound.claim.total_seconds()))
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

    async def _keep_claims(self) -> None:
        """Renew the claims of every update in hand (queued, being handled, waiting for a retry), three times a
        claim's length, so that none lapses while this replica works on it (see the module)."""
        while True:
            await asyncio.sleep(self.inbound.claim.total_seconds() / 3)
            try:
                await asyncio.to_thread(self.inbound.renew, set(self.durable_queue.in_flight))
            except Exception as error:  # the database is away: the claims may lapse, the handlers are idempotent
                log.warning("update claims not renewed (%s)", type(error).__name__)

    async def _replay(self) -> int:
        queue = self.durable_queue
        moment = time.monotonic()
        self._resting = {key: until for key, until in self._resting.items() if until > moment}
        in_hand = set(queue.in_flight) | set(self._resting)
        pending = await asyncio.to_thread(lambda: list(self.inbound.unprocessed(queue.bot_id, skip=in_hand)))
        replayed = 0
        for key, payload in pending:
            if key in queue.in_flight or not await asyncio.to_thread(self.inbound.take, key):
                continue  # in hand meanwhile, or another replica claimed it first
            update = Update.de_json(payload, self.bot)
            queue.hand_over(update, key)
            replayed += 1
        return replayed
