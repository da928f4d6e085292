"""Per-process resources: the database, the gateway client, the publisher.

Built on first use in the process that uses them, so a forked Celery worker child never
shares its parent's sockets or connection pool.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from celery import Celery

from worker.app import settings_of
from worker.gateway import FiboClient
from worker.ledger.db import Database
from worker.publish import Publisher
from worker.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    client: FiboClient
    publisher: Publisher

    def close(self) -> None:
        self.client.close()
        self.db.dispose()


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
            settings = settings_of(app)
            runtime = Runtime(
                settings=settings,
                db=Database(settings.database_url),
                client=FiboClient(settings),
                publisher=Publisher(app),
            )
            _runtimes[id(app)] = runtime
        return runtime


def reset_runtimes() -> None:
    """Close and forget every runtime of this process (tests, worker shutdown)."""
    with _lock:
        for runtime in _runtimes.values():
            runtime.close()
        _runtimes.clear()
