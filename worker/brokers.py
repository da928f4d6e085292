"""What travels through the broker, and the broker-URL helpers: plain names and numbers.

The task names, the queues and the timing constants the send path and the Celery wiring
(``fibosms.celeryapp``) both need live here, below either of them.
"""

from __future__ import annotations

#: the task names, stable: Flower shows them and other processes publish by name
SEND_TASK = "fibosms.send_sms"
SEND_BATCH_TASK = "fibosms.send_batch"
SWEEP_TASK = "fibosms.sweep"
POLL_BALANCE_TASK = "fibosms.poll_balance"
POLL_TOTALS_TASK = "fibosms.poll_totals"
RECONCILE_DAY_TASK = "fibosms.reconcile_closed_day"
DELIVER_ALERTS_TASK = "fibosms.deliver_alerts"

#: the broker queues (``worker.kinds.QUEUE_OF`` maps a kind to one); a worker started
#: without -Q consumes all three
QUEUES = ("urgent", "default", "bulk")
#: the queue whose messages travel in send_batch tasks
BATCHED_QUEUE = "bulk"

#: seconds; a retry shorter than this rides on a broker countdown, a longer one waits in the
#: ledger for the sweep (Celery holds countdown tasks in worker memory, unacknowledged)
COUNTDOWN_MAX_SECONDS = 60.0
#: seconds Redis waits before it hands an unacknowledged task to another worker; above any
#: countdown in use, or countdown tasks would be delivered again in a loop
VISIBILITY_TIMEOUT_SECONDS = 3600

#: seconds a synchronous Redis command (a publish, an ack) or a connect may take. Redis
#: answers these in well under a millisecond; a broker that does not answer (frozen, or a
#: network that drops packets) must not hold a producer's caller: the publish fails and
#: the sweep publishes the committed row later. The consumer's BRPOP is not bound by it.
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0


def is_redis(url: str) -> bool:
    """Whether ``url`` names a Redis broker (task events, the beat lock, the shared limit)."""
    return url.startswith(("redis://", "rediss://"))
