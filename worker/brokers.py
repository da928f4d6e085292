"""What travels through the broker, and the broker-URL helpers: plain names and numbers.

The task names, the queues and the timing constants the send path and the Celery wiring
(``fibosms.celeryapp``) both need live here, below either of them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

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


#: seconds a Sentinel takes to answer "who is the master now"; during a failover the
#: client asks each Sentinel in turn
SENTINEL_SOCKET_TIMEOUT_SECONDS = 0.5

#: seconds RabbitMQ may take to confirm one publish before it counts as failed (the row
#: is committed: the sweep publishes it later)
AMQP_CONFIRM_TIMEOUT_SECONDS = 2.0

#: the RabbitMQ queue type of urgent, default and bulk: replicated, durable, and never
#: losing an acknowledged publish (publisher confirms)
QUORUM = {"x-queue-type": "quorum"}


def is_redis(url: str) -> bool:
    """Whether ``url`` names one Redis server directly (``redis://``, ``rediss://``)."""
    return url.startswith(("redis://", "rediss://"))


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names Redis through Sentinel (``sentinel://HOST:PORT;sentinel://…``)."""
    return url.startswith("sentinel://")


def is_amqp(url: str) -> bool:
    """Whether ``url`` names RabbitMQ (``amqp://``, ``amqps://``)."""
    return url.startswith(("amqp://", "amqps://"))


def is_redis_family(url: str) -> bool:
    """A Redis, direct or through Sentinel: it can hold shared state and the broker marker."""
    return is_redis(url) or is_sentinel(url)


def publish_options(url: str) -> dict[str, Any]:
    """The :class:`worker.publish.Publisher` options for the broker at ``url``.

    RabbitMQ: each publish waits at most AMQP_CONFIRM_TIMEOUT_SECONDS for its confirm, and
    a countdown is rounded up to whole seconds (Celery's native delayed delivery, which
    quorum queues need, counts in seconds and refuses less than one).
    """
    if is_amqp(url):
        return {"confirm_timeout": AMQP_CONFIRM_TIMEOUT_SECONDS, "whole_seconds": True}
    return {}


def has_fanout(url: str) -> bool:
    """Whether the broker carries task events (Flower): Redis, Sentinel and RabbitMQ do,
    the embedded SQLite broker does not."""
    return is_redis_family(url) or is_amqp(url)


def sentinel_nodes(url: str) -> list[tuple[str, int]]:
    """``sentinel://a:26379;sentinel://b:26379/0`` → ``[("a", 26379), ("b", 26379)]``.

    Raises ValueError for a part that is not ``sentinel://[:password@]HOST[:PORT][/DB]``.
    """
    nodes: list[tuple[str, int]] = []
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        parts = urlsplit(part)
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ValueError("each part must be sentinel://HOST:PORT")
        nodes.append((parts.hostname, parts.port or 26379))
    if not nodes:
        raise ValueError("no Sentinel named")
    return nodes


def sentinel_master_options(url: str) -> dict[str, Any]:
    """The master's database and password from a Sentinel URL (kombu reads the same)."""
    first = urlsplit(url.split(";")[0].strip())
    db = first.path.strip("/")
    options: dict[str, Any] = {"db": int(db) if db.isdigit() else 0}
    if first.password:
        options["password"] = unquote(first.password)
    if first.username:
        options["username"] = unquote(first.username)
    return options


def state_url(broker_url: str, redis_url: str | None) -> str | None:
    """The Redis that holds shared state: FIBOSMS_REDIS_URL, else the broker when it is a
    Redis; None means each piece of shared state falls back to its local behaviour."""
    if redis_url:
        return redis_url
    return broker_url if is_redis_family(broker_url) else None


def shared_state(broker_url: str, redis_url: str | None) -> dict[str, str]:
    """Where each piece of shared state lives, in words (``fibosms settings`` prints it)."""
    if is_redis_family(broker_url):
        marker = "in the broker's Redis, beside the queues"
    elif is_amqp(broker_url):
        marker = "not needed: RabbitMQ's quorum queues keep their messages"
    else:
        marker = "not needed: the embedded broker keeps its queues in its database"
    where = state_url(broker_url, redis_url)
    if where is None:
        return {
            "rate_limit": "local: one bucket per worker process (set FIBOSMS_REDIS_URL to "
            "share it, or divide FIBOSMS_RATE_LIMIT by the worker processes)",
            "breaker": "local: each worker process counts its own failures",
            "beat_lock": "none: run exactly one beat",
            "broker_marker": marker,
        }
    source = "FIBOSMS_REDIS_URL" if redis_url else "the broker's Redis"
    return {
        "rate_limit": f"shared by every worker, in {source}",
        "breaker": f"shared by every worker, in {source}",
        "beat_lock": f"in {source}: one beat schedules, the others stand by",
        "broker_marker": marker,
    }
