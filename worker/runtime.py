"""Per-process resources: the database, the gateway client, the publisher.

Built on first use in the process that uses them, so a forked Celery worker child never
shares its parent's sockets or connection pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from celery import Celery

from celeryconfig import REDIS_SOCKET_TIMEOUT_SECONDS, is_redis
from worker.app import settings_of
from worker.breaker import make_breaker
from worker.gateway import FiboClient
from worker.ledger.db import Database
from worker.publish import Publisher
from worker.ratelimit import make_limiter
from worker.sending import Gate
from worker.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    client: FiboClient
    publisher: Publisher
    gate: Gate
    #: concurrent gateway calls of the bulk path
    executor: ThreadPoolExecutor
    redis: redis.Redis | None

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.client.close()
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()


def build_runtime(app: Celery) -> Runtime:
    settings = settings_of(app)
    client = (
        redis.Redis.from_url(
            settings.broker_url,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        )
        if is_redis(settings.broker_url)
        else None
    )
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        client=FiboClient(settings),
        publisher=Publisher(app),
        gate=Gate(breaker=make_breaker(settings, client), limiter=make_limiter(settings, client)),
        executor=ThreadPoolExecutor(
            max_workers=settings.batch_concurrency, thread_name_prefix="fibosms-batch"
        ),
        redis=client,
    )


_lock = threading.Lock()
_runtimes: dict[int, Runtime] = {}
_pid = os.getpid()


def get_runtime(app: Celery) -> Runtime:
    """This process's runtime for ``app``."""
    global _pid
    with _lock:
        if os.getpid() != _pid:
            # forked: the parent's pools are not ours to use (nor to close)
            _runtimes.clear()
            _pid = os.getpid()
        runtime = _runtimes.get(id(app))
        if runtime is None:
            runtime = build_runtime(app)
            _runtimes[id(app)] = runtime
        return runtime


def reset_runtimes() -> None:
    """Close and forget every runtime of this process (tests, worker shutdown)."""
    with _lock:
        for runtime in _runtimes.values():
            runtime.close()
        _runtimes.clear()
