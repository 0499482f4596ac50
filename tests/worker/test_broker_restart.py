"""The worker survives a Redis restart: kombu's failed restore of unacknowledged messages no longer stops it
(worker/broker_restart.py), and the messages stay on Redis for redelivery. The whole worker through real Redis
restarts is exercised by tests/e2e/test_chaos.py; measured in the ops report."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import kombu as kombu_module
import pytest
import redis

from worker.broker_restart import keep_worker_alive_on_broker_restart

kombu: Any = kombu_module  # kombu is only partly typed


def test_a_channel_closed_after_its_connection_went_keeps_its_unacked_message_on_redis(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    keep_worker_alive_on_broker_restart()
    keep_worker_alive_on_broker_restart()  # idempotent: imported by every worker process
    prefix = f"broker-restart-{uuid.uuid4().hex[:8]}:"
    queue = kombu.Queue("restore-test", kombu.Exchange("restore-test", type="direct"), routing_key="restore-test")
    with kombu.Connection(redis_url, transport_options={"global_keyprefix": prefix}) as connection:
        channel = connection.channel()
        connection.Producer(channel).publish(
            {"job": "x"}, exchange=queue.exchange, routing_key="restore-test", declare=[queue]
        )
        message = queue(channel).get(no_ack=False)
        assert message is not None, "delivered and not acknowledged: the worker holds it"
        # What Celery's consumer leaves when Redis goes away mid-task: the channel's pool torn down by the
        # connection error, the transport already detached from its connection. Unpatched kombu 5.7 raises
        # AttributeError("'NoneType' object has no attribute 'hostname'") here and the worker stops.
        channel._pool = None
        transport_client = connection.transport.client
        connection.transport.client = None
        with caplog.at_level(logging.WARNING, logger="worker.broker_restart"):
            channel.close()
        connection.transport.client = transport_client
    assert "stay on Redis" in caplog.text
    with redis.Redis.from_url(redis_url) as client:
        assert client.hlen(f"{prefix}unacked") == 1, "the message waits on Redis for its redelivery"
        client.delete(*client.keys(f"{prefix}*"))


def test_the_restore_still_runs_while_the_connection_is_there(redis_url: str) -> None:
    keep_worker_alive_on_broker_restart()
    prefix = f"broker-restart-{uuid.uuid4().hex[:8]}:"
    queue = kombu.Queue("restore-test", kombu.Exchange("restore-test", type="direct"), routing_key="restore-test")
    with kombu.Connection(redis_url, transport_options={"global_keyprefix": prefix}) as connection:
        channel = connection.channel()
        connection.Producer(channel).publish(
            {"job": "y"}, exchange=queue.exchange, routing_key="restore-test", declare=[queue]
        )
        assert queue(channel).get(no_ack=False) is not None
        channel.close()  # a normal close: the message goes back on its queue at once
        with connection.channel() as again:
            redelivered = queue(again).get(no_ack=True)
            assert redelivered is not None and redelivered.payload == {"job": "y"}
    with redis.Redis.from_url(redis_url) as client:
        client.delete(*client.keys(f"{prefix}*"))
