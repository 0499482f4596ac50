"""Per-chat limits, counted in the broker's Redis: at most N photos from one chat in any rolling hour, at most N
updates of any kind from one chat (or group member) in any rolling minute (bot/fairness.py).

The key holds the pseudonymous chat reference (never the raw chat id) under the deployment's key prefix, and
expires with the window. Only photos let through are counted, so a patient who hit the limit can send again
as soon as the oldest counted photo is an hour old.
"""

from __future__ import annotations

import logging
import uuid

import redis

from shared.config import Settings

log = logging.getLogger(__name__)
WINDOW_S = 3600

# Atomic: drop what left the window, refuse at the limit, else count this photo. The moment is Redis's own TIME
# (unless a test gives one): every bot replica counts on that one clock, whatever its host's says.
_TAKE = """
local now = tonumber(ARGV[1])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RollingLimit:
    """At most ``limit`` events per key in any rolling ``window_s`` seconds, counted in Redis (so every bot process
    shares the count); ``name`` keeps limits apart. Only events let through are counted."""

    def __init__(self, client: redis.Redis, *, limit: int, window_s: float, name: str, key_prefix: str = "") -> None:
        self._client = client
        self.limit = limit
        self.window_s = window_s
        self._name = name
        self._key_prefix = key_prefix
        self._take = client.register_script(_TAKE)

    def key(self, ref: str) -> str:
        return f"{self._key_prefix}skinsense:{self._name}:{ref}"

    def allow(self, ref: str, *, now: float | None = None) -> bool:
        """Counts the event and says yes, or says no (and counts nothing) when the key is at its limit.
        With Redis unreachable it says yes: the limit protects capacity, and the enqueue reports the outage."""
        if self.limit <= 0:
            return True
        moment = "" if now is None else now  # "": Redis's clock
        try:
            allowed = self._take(keys=[self.key(ref)], args=[moment, int(self.window_s), self.limit, uuid.uuid4().hex])
        except redis.RedisError as error:
            log.warning("%s limit not checked: %s", self._name, type(error).__name__)
            return True
        return bool(allowed)

    def first_refusal(self, ref: str) -> bool:
        """True once per window and key: the refusal that gets the one polite notice (the others get none, so
        that a flood is not answered message for message)."""
        try:
            return bool(self._client.set(self.key(ref) + ":told", 1, nx=True, ex=max(int(self.window_s), 1)))
        except redis.RedisError:
            return False


class PhotoRateLimit(RollingLimit):
    """Photos one chat may send in any rolling hour."""

    def __init__(self, client: redis.Redis, *, per_hour: int, key_prefix: str = "") -> None:
        super().__init__(client, limit=per_hour, window_s=WINDOW_S, name="photos-per-hour", key_prefix=key_prefix)
        self.per_hour = per_hour

    @classmethod
    def from_settings(cls, settings: Settings) -> PhotoRateLimit:
        return cls(
            redis_client(settings), per_hour=settings.photos_per_chat_per_hour, key_prefix=settings.redis_key_prefix
        )


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
