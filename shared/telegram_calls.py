"""Every Telegram call of the bot and the workers goes through here: one retry policy, one limiter shared by the
whole deployment through Redis.

``TelegramCallLimiter`` is python-telegram-bot's hook around each Bot API request (``BaseRateLimiter``, given to
the bot's ``ApplicationBuilder.rate_limiter`` and to the workers' ``ExtBot``); ``TelegramRequest`` is the HTTP
layer under it, telling apart a request that never reached Telegram from one whose answer was lost.

- **Staying under Telegram's limits** instead of provoking 429s: before each message sent, one
  Redis script takes a slot from three GCRA buckets kept in Redis (SKINSENSE_TELEGRAM_MESSAGES_PER_S overall, one a
  second per private chat with a small burst, 20 a minute per group), so every bot and worker process counts
  against the same budget. Chats appear in the keys only as keyed hashes.
- **429**: the call is retried after exactly ``retry_after``, and the pause is written to Redis (the key
  ``<SKINSENSE_REDIS_KEY_PREFIX>skinsense:telegram:paused-until``) so every process of the deployment holds
  its calls until then, not just the one that was told.
- **Network errors and 5xx**: retried with backoff when repeating is harmless: methods that read or set state
  (getFile, editMessageText, answerCallbackQuery, sendChatAction, ...; file downloads too), and any method,
  sends included, when the request never reached Telegram (connection refused, a 502/503 from its front end).
  A send whose answer was lost (``OutcomeUnknown``) is not repeated here: it may have been delivered.
- **4xx that cannot succeed** (BadRequest, Forbidden, ...) are raised at once.
- **Waits a process must not block for**: a worker child waits at most ``max_wait_s`` (a longer pause or budget
  wait raises ``WaitTooLong``, a ``RetryAfter``, and the Celery task retries after it, freeing the child).

With Redis unreachable the calls still go out: the pause is then kept in this process only and the shared
budget is skipped (logged once), because refusing to answer patients would be worse than a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import redis
import redis.asyncio
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter
from telegram.request import HTTPXRequest, RequestData

from shared.audit import chat_reference
from shared.config import Settings
from shared.metrics import RETRIES, TELEGRAM_FLOOD_CONTROL

log = logging.getLogger(__name__)

FILE_DOWNLOAD = "download"  # the "endpoint" name of file downloads, which are not Bot API methods

# Repeating these is harmless: they read, or set a state to the same value again.
IDEMPOTENT_METHODS = frozenset(
    name.lower()
    for name in (
        "getMe",
        "getFile",
        "getUpdates",
        "getChat",
        "getWebhookInfo",
        "setWebhook",
        "deleteWebhook",
        "setMyCommands",
        "deleteMyCommands",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "deleteMessage",
        "answerCallbackQuery",
        "sendChatAction",
        FILE_DOWNLOAD,
    )
)

# Connection failures before a byte of the request left: Telegram never saw it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Telegram's front end answering for a back end that did not take the request.
_NOT_TAKEN_STATUSES = frozenset({502, 503})


class NotDelivered(NetworkError):
    """The request never reached Telegram (or its front end refused it before executing): safe to send again."""


class OutcomeUnknown(NetworkError):
    """The request was sent but its answer was lost (connection dropped, read timeout): it may have taken effect."""


class WaitTooLong(RetryAfter):
    """The shared pause or budget asks for a longer wait than this process may block for (a worker's child, which
    can analyse other photos meanwhile): handled like Telegram's own 429, the Celery task retries later."""


class TelegramRequest(HTTPXRequest):
    """PTB's HTTPX transport, raising ``NotDelivered`` or ``OutcomeUnknown`` instead of a bare ``NetworkError``
    so that the retry policy knows whether a send may be repeated."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,  # the timeouts: PTB types them with a private alias
        read_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        write_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        connect_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        pool_timeout: Any = HTTPXRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        try:
            code, payload = await super().do_request(
                url, method, request_data, read_timeout, write_timeout, connect_timeout, pool_timeout
            )
        except NetworkError as error:
            if isinstance(error.__cause__, _NOT_SENT):
                raise NotDelivered(f"not sent: {error.message}") from error.__cause__
            if isinstance(error.__cause__, httpx.HTTPError):
                raise OutcomeUnknown(f"answer lost: {error.message}") from error.__cause__
            raise
        if code in _NOT_TAKEN_STATUSES:
            raise NotDelivered(f"Telegram answered {code}")
        return code, payload


def is_not_modified(error: BadRequest) -> bool:
    """Telegram refused an edit that would change nothing ("message is not modified": a double tap, or an
    earlier attempt that already succeeded); not an error for whoever edits."""
    return "message is not modified" in error.message.lower()


@dataclass(frozen=True)
class Budget:
    """A GCRA bucket: one request per ``interval_s``, up to ``burst`` at once."""

    interval_s: float
    burst: int


TELEGRAM_MESSAGES_PER_S = 30  # Telegram: about 30 messages a second to different chats (a setting)
PRIVATE_CHAT = Budget(1.0, 3)  # one a second per chat, short bursts tolerated
GROUP_CHAT = Budget(3.0, 10)  # 20 a minute per group, a burst of 10

# KEYS[1]: the pause key; KEYS[2..]: bucket keys. ARGV per bucket: what this request costs (ms: the interval
# times the messages it counts for) and the bucket's tolerance (ms: the interval times the burst); last ARGV:
# "1" to take the slots, "0" only to ask.
# Returns 0 when the request may go now (its slots taken, if asked to), else the milliseconds to wait before
# asking again.
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return paused - now end
local wait = 0
local tats = {}
for i = 2, #KEYS do
  local cost = tonumber(ARGV[2 * i - 3])
  local tolerance = tonumber(ARGV[2 * i - 2])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now) + cost
  tats[i] = tat
  wait = math.max(wait, tat - tolerance - now)
end
if wait > 0 then return math.ceil(wait) end
if ARGV[#ARGV] ~= '1' then return 0 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
end
return 0
"""
# KEYS[1]: the pause key; ARGV[1]: the pause in ms. Only ever lengthens the pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms
"""

Callback = Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]]


def retry_after_seconds(error: RetryAfter) -> float:
    value = error._retry_after  # PTB 22 warns on .retry_after while it changes from int to timedelta
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def counts_as_message(endpoint: str) -> bool:
    """Telegram's published limits are on messages a bot sends; edits, chat actions, button answers and reads
    only honour the shared pause."""
    name = endpoint.lower()
    return name != "sendchataction" and name.startswith(("send", "copymessage", "forwardmessage"))


def may_repeat(endpoint: str, error: TelegramError) -> bool:
    """A network failure or 5xx worth trying again: the request never arrived, or repeating it is harmless."""
    if isinstance(error, RetryAfter):
        return True
    if not isinstance(error, NetworkError) or isinstance(error, BadRequest):
        return False
    return isinstance(error, NotDelivered) or endpoint.lower() in IDEMPOTENT_METHODS


# A shorter wait than the limiter's max_wait_s for the calls made inside ``TelegramCallLimiter.waiting_at_most``
# (a context variable: the coroutines a caller runs on its event loop see the caller's value).
_max_wait_here: ContextVar[float | None] = ContextVar("skinsense_telegram_max_wait", default=None)
# How many messages of its chat's budget each call inside ``TelegramCallLimiter.charging_chat`` takes (likewise).
_chat_messages_here: ContextVar[int] = ContextVar("skinsense_telegram_chat_messages", default=1)


class TelegramCallLimiter(BaseRateLimiter[None]):
    """Retries and rate limiting for every Bot API call of a process (see the module's docstring)."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        key_prefix: str,
        chat_hash_key: str,
        process: str,
        max_flood_waits: int = 10,
        max_network_attempts: int = 6,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_wait_s: float | None = None,
        messages_per_s: float = TELEGRAM_MESSAGES_PER_S,
    ) -> None:
        self.redis_url = redis_url
        # A second's worth of messages may go at once.
        self.overall = Budget(1 / messages_per_s, max(1, round(messages_per_s)))
        self.pause_key = f"{key_prefix}skinsense:telegram:paused-until"
        self._bucket_prefix = f"{key_prefix}skinsense:telegram:budget:"
        self._chat_hash_key = chat_hash_key
        self.process = process
        self.max_flood_waits = max_flood_waits
        self.max_network_attempts = max_network_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_wait_s = max_wait_s
        self._redis: redis.asyncio.Redis | None = None
        self._local_pause_until = 0.0  # monotonic; used when Redis cannot be reached
        self._redis_trouble_logged = False

    @classmethod
    def from_settings(cls, settings: Settings, *, process: str, max_wait_s: float | None = None) -> TelegramCallLimiter:
        return cls(
            redis_url=settings.redis_url,
            key_prefix=settings.redis_key_prefix,
            chat_hash_key=settings.chat_hash_key.get_secret_value(),
            process=process,
            max_wait_s=max_wait_s,
            messages_per_s=settings.telegram_messages_per_s,
        )

    async def initialize(self) -> None:
        if self.redis_url and self._redis is None:
            self._redis = redis.asyncio.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def shutdown(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        buckets = self._buckets(data.get("chat_id")) if counts_as_message(endpoint) else []
        flood_waits = network_attempts = 0
        while True:
            await self._wait_for_turn(buckets)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                TELEGRAM_FLOOD_CONTROL.labels(process=self.process).inc()
                pause_s = retry_after_seconds(error)
                log.warning("Telegram flood control on %s: every call waits %.1f s", endpoint, pause_s)
                await self.pause_everyone(pause_s)
                flood_waits += 1
                if flood_waits > self.max_flood_waits or self._too_long(pause_s):
                    raise
                RETRIES.labels(cause="flood_control").inc()
            except TelegramError as error:
                network_attempts += 1
                if not may_repeat(endpoint, error) or network_attempts >= self.max_network_attempts:
                    raise
                delay = min(self.first_backoff_s * 2 ** (network_attempts - 1), self.max_backoff_s)
                log.info("%s failed (%s); trying again in %.1f s", endpoint, type(error).__name__, delay)
                RETRIES.labels(cause="network").inc()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def call(self, endpoint: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """The same policy around something that is not a Bot API method (a file download)."""

        async def callback() -> Any:
            return await work()

        return await self.process_request(callback, (), {}, endpoint, {}, None)

    async def pause_everyone(self, pause_s: float) -> None:
        """Hold every Telegram call of the deployment for ``pause_s`` (Telegram's ``retry_after``)."""
        self._local_pause_until = max(self._local_pause_until, time.monotonic() + pause_s)
        client = self._redis
        if client is not None:
            try:
                await client.eval(_PAUSE, 1, self.pause_key, int(pause_s * 1000))
            except redis.RedisError as error:
                self._redis_unreachable(error)

    def _buckets(self, chat_id: object) -> list[tuple[str, Budget, int]]:
        """The buckets a message to ``chat_id`` takes from, each with how many messages it counts for there."""
        if chat_id is None:
            return []
        buckets = [(self._bucket_prefix + "all", self.overall, 1)]
        chat_messages = _chat_messages_here.get()
        if chat_messages == 0:
            return buckets  # its chat's slot was taken with the call before it (``charging_chat``)
        if isinstance(chat_id, int) or (isinstance(chat_id, str) and chat_id.lstrip("-").isdigit()):
            number = int(chat_id)
            reference = chat_reference(number, self._chat_hash_key)
            if number > 0:
                buckets.append((self._bucket_prefix + f"chat:{reference}", PRIVATE_CHAT, chat_messages))
            else:
                buckets.append((self._bucket_prefix + f"group:{reference}", GROUP_CHAT, chat_messages))
        else:  # a channel's or supergroup's @username
            reference = chat_reference(hash(str(chat_id)), self._chat_hash_key)
            buckets.append((self._bucket_prefix + f"group:{reference}", GROUP_CHAT, chat_messages))
        return buckets

    async def _wait_for_turn(self, buckets: list[tuple[str, Budget, int]]) -> None:
        while True:
            local_wait = self._local_pause_until - time.monotonic()
            if local_wait > 0:
                await self._wait(local_wait)
            wait_ms = await self._take_slot(buckets)
            if wait_ms <= 0:
                return
            await self._wait(wait_ms / 1000)

    @contextlib.contextmanager
    def waiting_at_most(self, seconds: float) -> Iterator[None]:
        """The calls made inside wait at most ``seconds`` (if less than ``max_wait_s``) for a pause or a budget;
        a longer wait raises ``WaitTooLong``, as beyond ``max_wait_s``."""
        token = _max_wait_here.set(seconds)
        try:
            yield
        finally:
            _max_wait_here.reset(token)

    @contextlib.contextmanager
    def charging_chat(self, messages: int) -> Iterator[None]:
        """Each message sent inside takes ``messages`` slots of its chat's budget at once: a message and those
        that must follow it go out together (the album of a clinician alert takes the slot of the text with its
        buttons too, so that many alerts to one chat never leave their albums waiting for their texts while
        other albums take every slot); 0: the call before took this one's slot. At most the chat's burst."""
        if not 0 <= messages <= PRIVATE_CHAT.burst:
            raise ValueError(f"a call takes 0 to {PRIVATE_CHAT.burst} slots of its chat's budget, not {messages}")
        token = _chat_messages_here.set(messages)
        try:
            yield
        finally:
            _chat_messages_here.reset(token)

    def _too_long(self, wait_s: float) -> bool:
        limits = [limit for limit in (self.max_wait_s, _max_wait_here.get()) if limit is not None]
        return bool(limits) and wait_s > min(limits)

    async def _wait(self, wait_s: float) -> None:
        """Wait for the pause or the budget; a wait longer than ``max_wait_s`` is handed to the caller instead."""
        if self._too_long(wait_s):
            raise WaitTooLong(max(1, math.ceil(wait_s)))
        await asyncio.sleep(wait_s)

    async def chat_wait_s(self, chat_id: int, messages: int = 1) -> float:
        """How long a call sending ``messages`` messages to ``chat_id`` would wait now for the pause or the
        budgets; takes nothing. A caller with work to record before its call (a clinician alert's attempt) asks
        first, and leaves without writing anything when it would be told to wait."""
        with self.charging_chat(messages):
            buckets = self._buckets(chat_id)
        local_wait = self._local_pause_until - time.monotonic()
        return max(local_wait, (await self._take_slot(buckets, take=False)) / 1000, 0.0)

    async def _take_slot(self, buckets: list[tuple[str, Budget, int]], take: bool = True) -> int:
        client = self._redis
        if client is None:
            return 0
        keys = [self.pause_key] + [key for key, _, _ in buckets]
        arguments: list[int] = []
        for _, budget, messages in buckets:
            interval_ms = max(1, round(budget.interval_s * 1000))
            arguments += [interval_ms * messages, interval_ms * budget.burst]
        arguments.append(1 if take else 0)
        try:
            wait_ms = await client.eval(_TAKE_SLOT, len(keys), *keys, *arguments)
        except redis.RedisError as error:
            self._redis_unreachable(error)
            return 0
        self._redis_trouble_logged = False
        return int(wait_ms)

    def _redis_unreachable(self, error: Exception) -> None:
        if not self._redis_trouble_logged:
            log.warning("Telegram limiter without Redis (%s): pauses kept in this process only", type(error).__name__)
            self._redis_trouble_logged = True


def telegram_request(*, read_timeout: float = 30, pool_size: int = 16) -> TelegramRequest:
    return TelegramRequest(
        connection_pool_size=pool_size, connect_timeout=10, read_timeout=read_timeout, write_timeout=30
    )
