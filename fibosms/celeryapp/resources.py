"""Per-process resources, held in one place under one fork rule.

What a task needs (the database pool, the gateway client, the publisher, the breaker and
rate limit, the bulk path's threads, a Redis client) is built once per process: when a
prefork worker's child starts (Celery's ``worker_process_init``, see ``signals.py``) or, in
any other process (a threads or solo worker, a test, a command), on first use.

The fork rule: the child of a fork forgets everything the parent held — the parent's
sockets and pools are not the child's to use, nor to close — and builds its own. It is
applied once, here, by :func:`os.register_at_fork`; nothing else compares process ids.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from celery import Celery

from worker.breaker import make_breaker
from worker.brokers import publish_options
from worker.brokerstate import BrokerMarker, DurableBroker, RedisBrokerMarker
from worker.callwindow import CallWindow, NoWindow
from worker.gateway import FiboClient
from worker.ledger.db import Database
from worker.publish import Publisher
from worker.ratelimit import make_limiter
from worker.redisconn import broker_client, state_client
from worker.sending import Gate
from worker.settings import Settings

log = logging.getLogger("fibosms.resources")


def settings_of(app: Celery) -> Settings:
    """The settings ``app`` was built from (``fibosms.celeryapp.app.make_app``)."""
    settings: Settings = app.fibosms_settings
    return settings


def publisher_for(app: Celery) -> Publisher:
    """A publisher of send tasks through ``app``, batching as its settings say."""
    settings = settings_of(app)
    return Publisher(
        app,
        batch_size=settings.bulk_batch_size,
        **publish_options(settings.broker_url),
    )


@dataclass
class Resources:
    """One process's resources for one app."""

    settings: Settings
    db: Database
    client: FiboClient
    publisher: Publisher
    #: the single path's breaker, rate limit and call window
    gate: Gate
    #: concurrent gateway calls of the bulk path
    executor: ThreadPoolExecutor
    #: the broker's own Redis, where the marker lives; None when the broker is not Redis
    broker_redis: redis.Redis | None
    #: shared state (rate limit, breaker): FIBOSMS_REDIS_URL or the broker's Redis
    redis: redis.Redis | None
    #: tells the sweep whether the broker lost its queues
    marker: BrokerMarker

    @property
    def bulk_gate(self) -> Gate:
        """The same breaker and rate limit without the call window: a bulk batch already
        shares its transactions over 50 calls, and throttling its calls only split its
        outcome transactions (measured: 1.4 -> 1.7 ms of CPU a message)."""
        return dataclasses.replace(self.gate, window=NoWindow())

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.client.close()
        self.db.dispose()
        for client in (self.redis, self.broker_redis):
            if client is not None:
                client.close()


def build_resources(app: Celery) -> Resources:
    """Resources for ``app``; building them connects to nothing."""
    settings = settings_of(app)
    client = state_client(settings)
    # without FIBOSMS_REDIS_URL the state lives in the broker's Redis: one client for both
    broker_redis = client if settings.redis_url is None else broker_client(settings)
    return Resources(
        settings=settings,
        db=Database(settings.database_url),
        client=FiboClient(settings),
        publisher=publisher_for(app),
        gate=Gate(
            breaker=make_breaker(settings, client),
            limiter=make_limiter(settings, client),
            window=CallWindow(settings.batch_concurrency),
        ),
        executor=ThreadPoolExecutor(
            max_workers=settings.batch_concurrency, thread_name_prefix="fibosms-batch"
        ),
        redis=client,
        broker_redis=broker_redis,
        marker=DurableBroker() if broker_redis is None else RedisBrokerMarker(broker_redis),
    )


class _Holder:
    """This process's default app and each app's resources."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.default: Celery | None = None
        #: id(app) → (app, its resources); the app is kept so its id is not reused
        self.by_app: dict[int, tuple[Celery, Resources]] = {}

    def after_fork_in_child(self) -> None:
        # another thread may have held the lock at the fork; the parent's resources are
        # dropped, not closed. The default app stays: Celery resets its pools itself.
        self.lock = threading.Lock()
        self.by_app = {}


_holder = _Holder()
os.register_at_fork(after_in_child=_holder.after_fork_in_child)


def resources_of(app: Celery) -> Resources:
    """This process's resources for ``app``, built on first use."""
    with _holder.lock:
        held = _holder.by_app.get(id(app))
        if held is None:
            held = (app, build_resources(app))
            _holder.by_app[id(app)] = held
        return held[1]


def start_process(app: Celery) -> None:
    """Build ``app``'s resources now (a worker process starting), not at the first task."""
    resources_of(app)
    log.info("process %d: database pool, gateway client and publisher ready", os.getpid())


def close_process() -> None:
    """Close and forget every resource of this process (a worker process ending, tests)."""
    with _holder.lock:
        held, _holder.by_app = list(_holder.by_app.values()), {}
    for _, resources in held:
        try:
            resources.close()
        except Exception as exc:  # closing must not stop the others from closing
            log.warning("closing a worker resource failed (%s)", type(exc).__name__)


def default_app(factory: Callable[[], Celery]) -> Celery:
    """The process's default app, made by ``factory`` on first use."""
    with _holder.lock:
        if _holder.default is None:
            _holder.default = factory()
        return _holder.default
