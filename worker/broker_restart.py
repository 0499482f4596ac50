"""Keeps the worker alive through a Redis restart (kombu 5.6-5.7: celery/kombu's redis transport).

When Redis goes away, Celery's consumer closes its broker connection (``on_connection_error_after_connected``).
Closing the Redis channel first tries to put the messages this worker holds unacknowledged back on their queue
(``QoS.restore_unacked``). When the channel's connection pool was already torn down by the error and the
transport already detached from its connection, making a Redis client for that restore fails with
``AttributeError: 'NoneType' object has no attribute 'hostname'``; Celery does not expect that error there and
stops the whole worker ("Unrecoverable error"), killing the tasks its pool was running.

The restore cannot succeed at that moment anyway (Redis is down). The messages are not lost by skipping it:
they stay in Redis's unacknowledged hash, which the append-only file keeps, and kombu puts them back on their
queue after the visibility timeout (the reconciler re-enqueues their jobs sooner). So when no client can be
made, the restore is skipped with a warning and the worker reconnects as it does for any other broker error.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_PATCHED = "_skinsense_survives_broker_restart"


def _cannot_make_a_client(qos: Any, client: Any) -> bool:
    channel = qos.channel
    if client is not None or getattr(channel, "_pool", None) is not None:
        return False
    transport = getattr(channel, "connection", None)
    return transport is None or getattr(transport, "client", None) is None


def keep_worker_alive_on_broker_restart() -> None:
    """Patch kombu's Redis ``QoS.restore_unacked`` once (idempotent)."""
    qos_class: Any = kombu_redis.QoS
    original = qos_class.restore_unacked
    if getattr(original, _PATCHED, False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        if _cannot_make_a_client(self, client):
            log.warning(
                "broker connection already closed: %d unacknowledged message(s) stay on Redis and are "
                "redelivered after the visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return original(self, client)

    setattr(restore_unacked, _PATCHED, True)
    qos_class.restore_unacked = restore_unacked
