"""The per-chat photo limit (bot/rate_limit.py) on the tests' own Redis: a rolling hour, per chat, per
deployment, pseudonymous keys, and open when Redis is away."""

from __future__ import annotations

import uuid

import redis

from bot.rate_limit import WINDOW_S, PhotoRateLimit
from shared.audit import chat_reference
from shared.config import Settings


def limit_on(redis_url: str, per_hour: int, prefix: str | None = None) -> PhotoRateLimit:
    prefix = prefix if prefix is not None else f"limit-{uuid.uuid4().hex[:8]}:"
    return PhotoRateLimit.from_settings(
        Settings(redis_url=redis_url, photos_per_chat_per_hour=per_hour, redis_key_prefix=prefix)
    )


def test_a_chat_gets_its_hourly_photos_then_is_refused(redis_url: str) -> None:
    limit = limit_on(redis_url, per_hour=3)
    chat = chat_reference(1234, "key")
    assert [limit.allow(chat, now=1000.0 + i) for i in range(5)] == [True, True, True, False, False]
    assert limit.allow(chat_reference(5678, "key"), now=1005.0), "other chats are not affected"


def test_the_window_rolls_and_refused_photos_do_not_count(redis_url: str) -> None:
    limit = limit_on(redis_url, per_hour=2)
    chat = chat_reference(1234, "key")
    assert limit.allow(chat, now=0.0) and limit.allow(chat, now=600.0)
    assert not limit.allow(chat, now=1200.0)
    assert not limit.allow(chat, now=WINDOW_S - 1.0)
    assert limit.allow(chat, now=WINDOW_S + 1.0), "the first photo left the hour: one more"
    assert not limit.allow(chat, now=WINDOW_S + 2.0)
    assert limit.allow(chat, now=WINDOW_S + 601.0)


def test_deployments_count_apart_and_keys_hold_no_chat_id(redis_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    clinic_a, clinic_b = limit_on(redis_url, 1, f"a-{tag}:"), limit_on(redis_url, 1, f"b-{tag}:")
    chat = chat_reference(987_650_322, "key")
    assert clinic_a.allow(chat) and not clinic_a.allow(chat)
    assert clinic_b.allow(chat), "another deployment on the same Redis has its own count"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(str(key) for key in client.keys(f"*{tag}*"))
    assert keys == [clinic_a.key(chat), clinic_b.key(chat)]
    assert all("987650322" not in key for key in keys)
    assert 0 < int(client.ttl(clinic_a.key(chat))) <= WINDOW_S, "the count expires with the window"


def test_zero_means_no_limit(redis_url: str) -> None:
    limit = limit_on(redis_url, per_hour=0)
    assert all(limit.allow("c" * 32) for _ in range(100))


def test_redis_away_lets_photos_through() -> None:
    from tests.auxil.services import free_port

    limit = limit_on(f"redis://127.0.0.1:{free_port()}/0", per_hour=1)
    assert limit.allow("c" * 32) and limit.allow("c" * 32)
