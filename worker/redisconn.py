"""Redis clients for state that is not a queue, and for the broker's own Redis.

Two Redis roles, which may be one server:

- **shared state** (the rate-limit bucket, the circuit breaker, the beat lock):
  ``FIBOSMS_REDIS_URL``, or the broker when the broker is a Redis (:func:`state_client`);
- **the broker's Redis**, where the broker marker must live beside the queues, so that
  whatever empties the queues takes the marker too (:func:`broker_client`).

Either may be a Sentinel URL (``sentinel://HOST:PORT;sentinel://HOST:PORT``, the master
named by ``FIBOSMS_BROKER_SENTINEL_MASTER``): the client then asks the Sentinels for the
current master at each new connection, so after a failover the next command reaches the
promoted replica. Building a client connects to nothing.
"""

from __future__ import annotations

import redis
from redis.sentinel import Sentinel

from worker.brokers import (
    REDIS_SOCKET_TIMEOUT_SECONDS,
    SENTINEL_SOCKET_TIMEOUT_SECONDS,
    is_redis_family,
    is_sentinel,
    sentinel_master_options,
    sentinel_nodes,
    state_url,
)
from worker.settings import Settings


def client_for(url: str, master: str | None) -> redis.Redis:
    """A client of the Redis at ``url`` (``redis://``, ``rediss://`` or ``sentinel://``)."""
    if is_sentinel(url):
        if not master:
            raise ValueError("a sentinel:// URL needs FIBOSMS_BROKER_SENTINEL_MASTER")
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinel_nodes(url),
            socket_timeout=SENTINEL_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SENTINEL_SOCKET_TIMEOUT_SECONDS,
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            master,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            **sentinel_master_options(url),
        )
        return client
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
    )


def state_client(settings: Settings) -> redis.Redis | None:
    """The Redis for shared state, or None: each piece falls back to its local behaviour."""
    url = state_url(settings.broker_url, settings.redis_url)
    if url is None:
        return None
    return client_for(url, settings.broker_sentinel_master)


def broker_client(settings: Settings) -> redis.Redis | None:
    """The broker's own Redis (for the broker marker), or None when the broker is not one."""
    url = settings.broker_url
    if not is_redis_family(url):
        return None
    return client_for(url, settings.broker_sentinel_master)
