"""Noticing that the broker lost its queues (a flush, a restart of a Redis that keeps
nothing on disk, a failover to an empty replica).

A marker key lives in the broker's own Redis database (never in FIBOSMS_REDIS_URL's),
beside the queues, so whatever empties the queues takes the marker with it. The sweep
checks it each pass: when it is gone, every publish the ledger remembers is forgotten and
the due rows are published at once, instead of waiting
``FIBOSMS_REPUBLISH_AFTER_SECONDS`` for them to look lost.
"""

from __future__ import annotations

import logging
from typing import Protocol

import redis

from worker.redisconn import broker_client
from worker.settings import Settings

log = logging.getLogger("fibosms.sweep")

#: the marker's key in the broker's Redis database
MARKER_KEY = "fibosms:broker:marker"


class BrokerMarker(Protocol):
    def lost(self) -> bool:
        """True when the broker has lost what was published since :meth:`mark`."""
        ...

    def mark(self) -> None:
        """Leave the marker beside the queues."""
        ...


class DurableBroker:
    """A broker that keeps what it holds (the embedded SQLite broker, RabbitMQ's quorum
    queues): never lost."""

    def lost(self) -> bool:
        return False

    def mark(self) -> None:
        return None


def marker_for(settings: Settings) -> BrokerMarker:
    """The marker for the broker ``settings`` name (building it connects to nothing).

    Only a Redis broker (direct or through Sentinel) can lose its queues unseen; RabbitMQ's
    quorum queues and the embedded broker keep theirs, and need no marker.
    """
    client = broker_client(settings)
    return DurableBroker() if client is None else RedisBrokerMarker(client)


class RedisBrokerMarker:
    """The marker in the broker's Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def lost(self) -> bool:
        try:
            return not self._client.exists(MARKER_KEY)
        except redis.RedisError as exc:
            # unreachable: nothing can be published now anyway; ask again next pass
            log.warning("broker marker unreadable (%s); checked again next sweep",
                        type(exc).__name__)
            return False

    def mark(self) -> None:
        try:
            self._client.set(MARKER_KEY, "1")
        except redis.RedisError as exc:
            log.warning("broker marker not written (%s)", type(exc).__name__)
