"""Per-chat photo limit, counted in the broker's Redis: at most N photos from one chat in any rolling hour.

The key holds the pseudonymous chat reference (never the raw chat id) under the deployment's key prefix, and
expires with the window. Only photos let through are counted, so a patient who hit the limit can send again
as soon as the oldest counted photo is an hour old.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import lru_cache

import redis

from shared.config import Settings, get_settings

log = logging.getLogger(__name__)
WINDOW_S = 3600

# Atomic: drop what left the window, refuse at the limit, else count this photo.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class PhotoRateLimit:
    def __init__(self, client: redis.Redis, *, per_hour: int, key_prefix: str = "") -> None:
        self._client = client
        self.per_hour = per_hour
        self._key_prefix = key_prefix
        self._take = client.register_script(_TAKE)

    @classmethod
    def from_settings(cls, settings: Settings) -> PhotoRateLimit:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, per_hour=settings.photos_per_chat_per_hour, key_prefix=settings.redis_key_prefix)

    def key(self, chat_ref: str) -> str:
        return f"{self._key_prefix}skinsense:photos-per-hour:{chat_ref}"

    def allow(self, chat_ref: str, *, now: float | None = None) -> bool:
        """Counts the photo and says yes, or says no (and counts nothing) when the chat is at its limit.
        With Redis unreachable it says yes: the limit protects capacity, and the enqueue reports the outage."""
        if self.per_hour <= 0:
            return True
        moment = time.time() if now is None else now
        try:
            allowed = self._take(keys=[self.key(chat_ref)], args=[moment, WINDOW_S, self.per_hour, uuid.uuid4().hex])
        except redis.RedisError as error:
            log.warning("photo rate limit not checked: %s", type(error).__name__)
            return True
        return bool(allowed)


@lru_cache
def get_photo_rate_limit() -> PhotoRateLimit:
    return PhotoRateLimit.from_settings(get_settings())
