"""Prometheus metrics. Two sources, chosen by what stays right with many worker processes:

* **the ledger and the broker, read at scrape time** by ``fibosms metrics`` (one small
  server, anywhere that reaches the database and Redis): :mod:`worker.metrics.ledger`,
  :mod:`worker.metrics.broker`. Every worker writes its outcome to the ledger, so one scrape
  sees the whole fleet, however many processes and machines it has;
* **each worker process's own calls** (gateway latency, task outcomes, sweep passes):
  :mod:`worker.metrics.process`, served by a worker itself when
  ``FIBOSMS_WORKER_METRICS_PORT`` is set (Prometheus multiprocess mode under the prefork
  pool, when ``PROMETHEUS_MULTIPROC_DIR`` is set).

The README ("Metrics") lists every metric with its labels and example queries; the alert
rules are ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from worker.ledger.db import Database
from worker.metrics.broker import BrokerCollector
from worker.metrics.ledger import LedgerCollector
from worker.settings import Settings

__all__ = ["BrokerCollector", "LedgerCollector", "build_registry"]


def build_registry(settings: Settings, db: Database) -> CollectorRegistry:
    """The registry ``fibosms metrics`` serves; registering queries nothing."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(settings, db))
    registry.register(BrokerCollector(settings))
    return registry
