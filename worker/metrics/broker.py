"""Queue depth read from the broker at scrape time (Redis, direct or through Sentinel).

kombu keeps a Celery queue in Redis as a list named after it, plus one list per priority
step (``urgent\\x06\\x163`` …); a task handed to a worker but not acknowledged (running, or
waiting out a countdown) sits in the ``unacked`` hash until acknowledged. The SQLite broker
is not measured: it serves one machine, and ``fibosms_messages_in_flight`` says the same
from the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.breaker import FAILURES_KEY as BREAKER_FAILURES_KEY
from worker.breaker import OPEN_KEY as BREAKER_OPEN_KEY
from worker.brokers import QUEUES, is_redis_family
from worker.settings import Settings

log = logging.getLogger("fibosms.metrics")

#: kombu's Redis transport: priority separator and steps, the unacked hash
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"
#: seconds to connect to and wait for Redis during a scrape
REDIS_TIMEOUT_SECONDS = 2.0


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu spreads ``queue`` over (one per priority step)."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


class BrokerCollector(Collector):
    """``LLEN`` of each queue's lists and ``HLEN`` of the unacked hash, at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._state_client: Any = None

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not connect

    def _redis(self) -> Any:
        if self._client is None:
            from worker.redisconn import broker_client

            self._client = broker_client(self.settings)
        return self._client

    def _state(self) -> Any:
        """The shared-state Redis the breaker lives in: the broker's, unless
        FIBOSMS_REDIS_URL names another."""
        if self.settings.redis_url is None:
            return self._redis()
        if self._state_client is None:
            from worker.redisconn import state_client

            self._state_client = state_client(self.settings)
        return self._state_client

    def collect(self) -> Iterable[Metric]:
        if not is_redis_family(self.settings.broker_url):
            return []
        depth = GaugeMetricFamily(
            "fibosms_queue_depth",
            "Tasks waiting in the broker, by queue (Redis LLEN).",
            labels=["queue"],
        )
        up = 1.0
        unacked = 0.0
        try:
            pipe = self._redis().pipeline(transaction=False)
            for queue in QUEUES:
                for key in queue_keys(queue):
                    pipe.llen(key)
            pipe.hlen(UNACKED_KEY)
            lengths = pipe.execute()
            state = self._state().pipeline(transaction=False)
            state.get(BREAKER_FAILURES_KEY)
            state.pttl(BREAKER_OPEN_KEY)
            breaker_failures, breaker_open_ms = state.execute()
        except Exception as exc:
            up = 0.0
            log.warning("metrics: the broker cannot be read: %s", type(exc).__name__)
        else:
            per_queue = len(PRIORITY_STEPS) + 1
            for i, queue in enumerate(QUEUES):
                depth.add_metric([queue], sum(lengths[i * per_queue:(i + 1) * per_queue]))
            unacked = float(lengths[-1])
        families: list[Metric] = [
            GaugeMetricFamily(
                "fibosms_broker_up", "1 when the broker answered this scrape.", value=up
            )
        ]
        if up:
            families.append(depth)
            families.append(
                GaugeMetricFamily(
                    "fibosms_broker_unacked_tasks",
                    "Tasks delivered to a worker and not yet acknowledged (running, or "
                    "waiting out a countdown retry).",
                    value=unacked,
                )
            )
            families.append(
                GaugeMetricFamily(
                    "fibosms_breaker_open",
                    "1 while the circuit breaker stops gateway calls (shared in Redis).",
                    value=1.0 if breaker_open_ms is not None and breaker_open_ms > 0 else 0.0,
                )
            )
            families.append(
                GaugeMetricFamily(
                    "fibosms_breaker_consecutive_failures",
                    "Consecutive transient gateway failures the breaker has counted.",
                    value=float(breaker_failures or 0),
                )
            )
        return families
