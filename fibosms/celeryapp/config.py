"""Celery's configuration for fibosms, derived from the one settings object.

The choices fit a task that must not run twice by accident: JSON only, late
acknowledgement, a task whose worker died goes back to the queue, a few messages prefetched at
a time, no results stored (the ledger holds the outcome).

A warm shutdown (SIGTERM) is bounded: the worker stops taking tasks and waits for the
running ones, and every send task has a time limit derived from the gateway call deadline
(:func:`send_time_limits`). The top-level ``celeryconfig`` module re-exports this one.
"""

from __future__ import annotations

import math
from typing import Any

from celery.schedules import crontab

from worker.brokers import (
    DELIVER_ALERTS_TASK,
    POLL_BALANCE_TASK,
    POLL_TOTALS_TASK,
    RECONCILE_DAY_TASK,
    SEND_BATCH_TASK,
    SEND_TASK,
    SWEEP_TASK,
    has_fanout,
    state_url,
)
from worker.publish import PUBLISH_RETRY_POLICY, task_queues, transport_options
from worker.settings import Settings
from worker.settings.rules import token_wait_seconds

# the publishing side (retry policy, transport options, queues) is shared with
# worker.publish, which publishes without a Celery app; re-exported here, beside the rest
# of Celery's configuration
__all__ = [
    "PUBLISH_RETRY_POLICY",
    "beat_schedule",
    "build",
    "send_time_limits",
    "shutdown_bound_seconds",
    "task_queues",
    "transport_options",
]

#: seconds a send task gets beyond its gateway calls: the claim, the transaction that
#: records the outcome, publishing a short retry
TASK_OVERHEAD_SECONDS = 5.0
#: seconds between the soft limit (the task is interrupted; the attempt is recorded with
#: an unknown outcome) and the hard one (the pool process is killed; the sweep recovers)
HARD_LIMIT_GRACE_SECONDS = 5.0


def send_time_limits(settings: Settings) -> dict[str, tuple[float, float]]:
    """``{task name: (soft limit, hard limit)}`` in seconds, for the two send tasks.

    ``send_sms`` makes one gateway call, or ``single_batch_size`` when messages gathered
    on a busy worker (``gather.py``); ``send_batch`` makes ``bulk_batch_size`` calls;
    both ``batch_concurrency`` at a time. Each call is bounded by ``call_deadline_seconds``;
    with a rate limit, each round may first wait for a token. The longest of these limits
    is how long a warm shutdown can take (the README's "Stopping a worker").
    """
    token_wait = token_wait_seconds(
        settings.sending_timeout_seconds, settings.rate_limit is not None
    )
    per_round = settings.call_deadline_seconds + token_wait
    rounds = math.ceil(settings.bulk_batch_size / settings.batch_concurrency)
    gathered = math.ceil(settings.single_batch_size / settings.batch_concurrency)
    limits: dict[str, tuple[float, float]] = {}
    for name, calls in ((SEND_TASK, gathered), (SEND_BATCH_TASK, rounds)):
        soft = calls * per_round + TASK_OVERHEAD_SECONDS
        limits[name] = (soft, soft + HARD_LIMIT_GRACE_SECONDS)
    return limits


def shutdown_bound_seconds(settings: Settings) -> float:
    """The longest a warm shutdown waits for running send tasks: the largest hard limit."""
    return max(hard for _, hard in send_time_limits(settings).values())


def build(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings``."""
    events = settings.task_events and has_fanout(settings.broker_url)
    locked_beat = state_url(settings.broker_url, settings.redis_url) is not None
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # room for several gathered runs of single messages (gather.py)
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        # a task running when the broker connection is lost is given up at once (its
        # message goes back to the queue, the ledger's claim keeps it to one send) instead
        # of holding the worker's restart, or its shutdown, until it ends
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": "default",
        "task_queues": task_queues(settings),
        "task_create_missing_queues": False,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
        # task events feed Flower; the SQLite broker has no fanout
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "worker_redirect_stdouts": False,
        "beat_schedule": beat_schedule(settings),
        "beat_schedule_filename": f"{settings.data_dir}/celerybeat-schedule",
        # with a Redis for shared state, one beat across machines (beatlock.py); else the
        # file scheduler, and the deployment runs exactly one beat
        "beat_scheduler": (
            "fibosms.celeryapp.beatlock:LockedScheduler"
            if locked_beat
            else "celery.beat:PersistentScheduler"
        ),
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """The periodic tasks. Each expires when it could not start before its next run is due."""

    def every(task: str, seconds: float) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": seconds,
            "options": {"expires": seconds, "queue": "default"},
        }

    return {
        "sweep": every(SWEEP_TASK, settings.sweep_seconds),
        "deliver-alerts": every(DELIVER_ALERTS_TASK, settings.sweep_seconds),
        "poll-balance": every(POLL_BALANCE_TASK, settings.balance_poll_seconds),
        "poll-totals": every(POLL_TOTALS_TASK, settings.totals_poll_seconds),
        # 00:10 in Vietnam (UTC+7, no daylight saving) = 17:10 UTC: the day that just closed
        "reconcile-closed-day": {
            "task": RECONCILE_DAY_TASK,
            "schedule": crontab(hour=17, minute=10),
            "options": {"expires": 3600, "queue": "default"},
        },
    }
