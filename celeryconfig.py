"""Celery's configuration for fibosms: a thin door to :mod:`fibosms.celeryapp.config`.

Kept at the top level for the names other modules import from here; new code imports the
broker names from :mod:`worker.brokers`, the queue of a kind from :mod:`worker.kinds`, and
the configuration itself from :mod:`fibosms.celeryapp.config`. The configuration's names
are resolved on first access: a module that wants a queue name from here does not import
the Celery wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.brokers import (
    COUNTDOWN_MAX_SECONDS,
    DELIVER_ALERTS_TASK,
    POLL_BALANCE_TASK,
    POLL_TOTALS_TASK,
    QUEUES,
    RECONCILE_DAY_TASK,
    REDIS_SOCKET_TIMEOUT_SECONDS,
    SEND_BATCH_TASK,
    SEND_TASK,
    SWEEP_TASK,
    VISIBILITY_TIMEOUT_SECONDS,
    is_redis,
)
from worker.kinds import QUEUE_OF

if TYPE_CHECKING:
    from fibosms.celeryapp.config import (
        HARD_LIMIT_GRACE_SECONDS,
        PUBLISH_RETRY_POLICY,
        TASK_OVERHEAD_SECONDS,
        beat_schedule,
        build,
        send_time_limits,
    )

#: message kind (its plain name) → queue
QUEUE_BY_KIND: dict[str, str] = {str(kind): queue for kind, queue in QUEUE_OF.items()}

_FROM_CONFIG = frozenset({
    "HARD_LIMIT_GRACE_SECONDS",
    "PUBLISH_RETRY_POLICY",
    "TASK_OVERHEAD_SECONDS",
    "beat_schedule",
    "build",
    "send_time_limits",
})

__all__ = [
    "COUNTDOWN_MAX_SECONDS",
    "DELIVER_ALERTS_TASK",
    "HARD_LIMIT_GRACE_SECONDS",
    "POLL_BALANCE_TASK",
    "POLL_TOTALS_TASK",
    "PUBLISH_RETRY_POLICY",
    "QUEUES",
    "QUEUE_BY_KIND",
    "RECONCILE_DAY_TASK",
    "REDIS_SOCKET_TIMEOUT_SECONDS",
    "SEND_BATCH_TASK",
    "SEND_TASK",
    "SWEEP_TASK",
    "TASK_OVERHEAD_SECONDS",
    "VISIBILITY_TIMEOUT_SECONDS",
    "beat_schedule",
    "build",
    "is_redis",
    "send_time_limits",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_CONFIG:
        from fibosms.celeryapp import config

        return getattr(config, name)
    raise AttributeError(f"module 'celeryconfig' has no attribute {name!r}")
