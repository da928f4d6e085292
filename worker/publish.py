"""Hand message ids to the broker. Only ids travel: never a number, a text or a secret.

Messages for the bulk queue travel in ``send_batch`` tasks of up to
FIBOSMS_BULK_BATCH_SIZE ids, so a campaign costs one task per batch; the others travel
one ``send_sms`` task each.

Two publishers, one protocol (:class:`Publishes`):

* :class:`Publisher` publishes through a Celery app (or anything with ``send_task`` and
  ``producer_or_acquire``) it is given; it knows nothing of how that app is made
  (``fibosms.celeryapp``). The worker, the sweep and beat use it: they have the app anyway.
* :class:`BrokerPublisher` writes the same Celery task messages (protocol 2) straight to the
  broker, from the settings alone: no Celery app is built or imported (through kombu on
  RabbitMQ and the SQLite broker; on Redis it writes kombu's envelope itself). The producer
  side uses it (``producer.default_producer``, ``fibosms send``, the HTTP API): building a
  Celery app costs a short-lived command most of its start-up, and ``send_task`` most of the
  time of one ``enqueue_sms``. docs/decisions.md (10) says what was measured.

The broker options both share (retry policy, transport options, queues) live here too;
``fibosms.celeryapp.config`` configures the Celery app with the same ones.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from worker import resp
from worker.brokers import (
    BATCHED_QUEUE,
    QUEUES,
    QUORUM,
    REDIS_SOCKET_TIMEOUT_SECONDS,
    SEND_BATCH_TASK,
    SEND_TASK,
    SENTINEL_SOCKET_TIMEOUT_SECONDS,
    VISIBILITY_TIMEOUT_SECONDS,
    has_fanout,
    is_amqp,
    is_redis_family,
    is_sentinel,
    publish_options,
)
from worker.ledger import sqlite_broker
from worker.ledger.oneshot import sqlite_path_for

if TYPE_CHECKING:
    from kombu.entity import Queue

    from worker.settings import Settings

log = logging.getLogger("fibosms.publish")

#: one task to publish: its name, the message ids it carries, its queue
_Task = tuple[str, list[int], str]

__all__ = [
    "BATCHED_QUEUE",
    "PUBLISH_RETRY_POLICY",
    "BrokerPublisher",
    "Publisher",
    "Publishes",
    "TaskSender",
    "broker_publisher",
    "task_queues",
    "transport_options",
]

#: how hard one publish tries before the message is left to the sweep (it is committed).
#: With an unresponsive broker each try costs up to REDIS_SOCKET_TIMEOUT_SECONDS, plus one
#: more for the reconnection's handshake: one retry keeps an enqueue under ~3.5 s.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

#: seconds a connection to the broker may take to open
BROKER_CONNECT_TIMEOUT_SECONDS = 2.0

#: connections (and producers) one publisher holds open at most, as Celery's broker pool
POOL_LIMIT = 10

#: the exchange RabbitMQ's native delayed delivery routes a countdown through (Celery's)
DELAYED_EXCHANGE = "celery_delayed_27"

#: where task events go (Flower reads them): Celery's event exchange
EVENT_EXCHANGE = "celeryev"

#: the routing key of Celery's task-sent event
EVENT_ROUTING_KEY = "task.sent"

#: the longest ``argsrepr`` (the arguments as text, for logs and Flower), as Celery cuts it
ARGSREPR_MAX = 1024


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options for the broker ``settings`` name."""
    url = settings.broker_url
    if is_redis_family(url):
        options: dict[str, Any] = {
            "visibility_timeout": max(
                VISIBILITY_TIMEOUT_SECONDS, int(settings.sending_timeout_seconds * 2)
            ),
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        }
        if is_sentinel(url):
            options["master_name"] = settings.broker_sentinel_master
            options["sentinel_kwargs"] = {
                "socket_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
                "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
            }
        return options
    if is_amqp(url):
        # a publish returns once RabbitMQ has the message on a quorum of its nodes; one
        # that is not confirmed in time raises, and the row is left to the sweep
        # (each publish waits at most brokers.AMQP_CONFIRM_TIMEOUT_SECONDS)
        return {"confirm_publish": True}
    return {}


def task_queues(settings: Settings) -> tuple[Queue, ...]:
    """urgent, default and bulk. With RabbitMQ: quorum queues (replicated, durable) behind
    topic exchanges, which Celery's native delayed delivery needs for short retries."""
    return _queues_for(settings.broker_url)


def _queues_for(url: str) -> tuple[Queue, ...]:
    from kombu.entity import Exchange, Queue

    if not is_amqp(url):
        return tuple(Queue(name) for name in QUEUES)
    return tuple(
        Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=QUORUM)
        for name in QUEUES
    )


class Publishes(Protocol):
    """What the send path, the sweep and replay need: publish ids, learn which failed."""

    def publish(
        self, items: list[tuple[int, str]], *, countdown: float | None = ...
    ) -> list[int]: ...


class TaskSender(Protocol):
    """The part of a Celery app a :class:`Publisher` uses."""

    def producer_or_acquire(self, producer: Any = ...) -> AbstractContextManager[Any]: ...

    def send_task(self, name: str, args: Any = ..., **options: Any) -> Any: ...


class Publisher:
    """Publishes send tasks through one Celery app's producer pool."""

    def __init__(
        self,
        app: TaskSender,
        *,
        batch_size: int,
        confirm_timeout: float | None = None,
        whole_seconds: bool = False,
    ) -> None:
        """``confirm_timeout``: seconds a publish waits for the broker's confirm;
        ``whole_seconds``: countdowns rounded up to whole seconds. Both for RabbitMQ, see
        ``worker.brokers.publish_options``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.app = app
        self.batch_size = batch_size
        self._options: dict[str, Any] = (
            {} if confirm_timeout is None else {"confirm_timeout": confirm_timeout}
        )
        self.whole_seconds = whole_seconds

    def publish(
        self, items: Sequence[tuple[int, str]], *, countdown: float | None = None
    ) -> list[int]:
        """Publish ``(message id, queue)`` pairs; returns the ids that could not be published.

        A failure is not fatal: the rows are committed, and the sweep publishes them later.
        """
        return _publish(items, self.batch_size, countdown, self.whole_seconds, self._each)

    def _each(self, tasks: list[_Task], countdown: float | None) -> Iterator[None]:
        with self.app.producer_or_acquire() as producer:
            for name, ids, queue in tasks:
                self.app.send_task(
                    name, args=_args(name, ids), queue=queue, countdown=countdown,
                    producer=producer, **self._options,
                )
                yield


class BrokerPublisher:
    """Publishes send tasks straight to the broker, as Celery would, without a Celery app.

    Each task is a Celery protocol-2 message, built as ``Celery.send_task`` builds it for
    an app configured by ``fibosms.celeryapp.config`` (the same headers, properties, body,
    exchange, routing key, delivery mode, queue declaration, retry policy and publisher
    confirms): a worker cannot tell the two apart (tests/integration/test_broker_publisher.py
    compares them and has a real worker run one). With task events on, a ``task-sent``
    event follows each task, as Celery sends it, for Flower.

    On RabbitMQ and the SQLite broker it publishes through kombu: connections are opened on
    the first publish, kept in a pool of :data:`POOL_LIMIT` for the process's threads, and
    forgotten in the child of a fork (never closed there). On Redis (Sentinel too) it writes
    what kombu's Redis transport writes, through one redis-py client, all of one call in one
    pipeline (:meth:`_publish_redis`). With ``oneshot``, for a process that publishes once
    and exits, a plain ``redis://`` broker gets that pipeline through :mod:`worker.resp` on a
    connection of its own, without importing redis-py.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int,
        transport_options: Mapping[str, Any],
        queues: Sequence[Queue] | None = None,
        events: bool = False,
        confirm_timeout: float | None = None,
        whole_seconds: bool = False,
        oneshot: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.url = url
        self.batch_size = batch_size
        self.transport_options = dict(transport_options)
        self._queues = None if queues is None else {q.name: q for q in queues}
        self.events = events
        self.confirm_timeout = confirm_timeout
        self.whole_seconds = whole_seconds
        self.amqp = is_amqp(url)
        self.redis_family = is_redis_family(url)
        self._redis: Any = None
        self._redis_db = 0
        #: a plain redis:// broker spoken to without redis-py (``oneshot``), else None
        self._wire = resp.endpoint(url) if oneshot else None
        #: the embedded broker's file, written without kombu (``oneshot``), else None
        self._sqlite = sqlite_path_for(url) if oneshot and url.startswith("sqla+") else None
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: Any = None
        self._clock = 0
        #: Celery's reply-to of a publishing app (no task replies: results are not stored)
        self._reply_to = str(uuid.uuid4())

    @property
    def queues(self) -> dict[str, Queue]:
        """The queues by name, as the Celery app declares them (kombu is imported only when
        a publish goes through kombu, or here)."""
        if self._queues is None:
            self._queues = {q.name: q for q in _queues_for(self.url)}
        return self._queues

    @property
    def speaks_wire(self) -> bool:
        """Whether a publish goes to the broker without redis-py or kombu: ``oneshot``, and
        a plain ``redis://`` broker or the embedded broker's file with its tables made."""
        if self._sqlite is not None:
            return sqlite_broker.ready(self._sqlite)
        return self._wire is not None

    # -- the Publishes protocol --------------------------------------------------------

    def publish(
        self, items: Sequence[tuple[int, str]], *, countdown: float | None = None
    ) -> list[int]:
        """Publish ``(message id, queue)`` pairs; returns the ids that could not be published.

        A failure is not fatal: the rows are committed, and the sweep publishes them later.
        """
        return _publish(items, self.batch_size, countdown, self.whole_seconds, self._each)

    def _each(self, tasks: list[_Task], countdown: float | None) -> Iterator[None]:
        if self._sqlite is not None:
            self._publish_sqlite(self._sqlite, tasks, countdown)
            for _ in tasks:
                yield
            return
        if self.redis_family:
            self._publish_redis(tasks, countdown)  # all of them in one pipeline
            for _ in tasks:
                yield
            return
        with self._producers().acquire(block=True) as producer:
            for name, ids, queue in tasks:
                self._send(producer, name, _args(name, ids), queue, countdown)
                yield

    # -- Redis -----------------------------------------------------------------------------

    def _publish_redis(
        self, tasks: list[_Task], countdown: float | None
    ) -> None:
        """Every task of the call, and its event, in one pipeline: one round trip.

        What kombu's Redis transport would write, written here: an LPUSH of the message's
        JSON envelope onto the queue's list, and a PUBLISH of each event on the fanout
        channel Celery's event receivers (Flower) subscribe to. kombu builds a Redis client
        and a pipeline for every publish, which costs more than the round trip. A pipeline
        that fails is sent again whole, as often as the retry policy says; what the first got
        through is then queued twice, which the ledger's claim makes harmless (as when the
        sweep publishes again).
        """
        if self._wire is not None:
            where = self._wire
            wire_commands = self._redis_commands(tasks, countdown, where.db)
            self._with_retries(
                lambda: resp.pipeline(where, wire_commands, timeout=REDIS_SOCKET_TIMEOUT_SECONDS),
                (OSError,),
            )
            return
        import redis

        client = self._redis_client()
        commands = self._redis_commands(tasks, countdown, self._redis_db)

        def send() -> None:
            with client.pipeline(transaction=False) as pipe:
                for command, key, payload in commands:
                    getattr(pipe, command)(key, payload)
                pipe.execute()

        self._with_retries(send, (redis.ConnectionError, redis.TimeoutError))

    def _publish_sqlite(
        self, path: Path, tasks: list[_Task], countdown: float | None
    ) -> None:
        """What kombu's SQLAlchemy transport would store for each task, stored directly: the
        same envelope as on Redis (both are kombu virtual transports), sent to the queue by
        name through the default exchange, as :meth:`_send` publishes there. No events: this
        broker carries none."""
        import sqlite3

        rows = []
        for name, ids, queue in tasks:
            headers, properties, body = self.message(name, _args(name, ids), countdown=countdown)
            rows.append((queue, _envelope(
                body, headers, {**properties, "delivery_mode": 2}, exchange="", routing_key=queue,
            )))
        self._with_retries(lambda: sqlite_broker.put(path, rows), (sqlite3.OperationalError,))

    def _redis_commands(
        self, tasks: list[_Task], countdown: float | None, db: int
    ) -> list[tuple[str, str, bytes]]:
        """The LPUSH of each task, and the PUBLISH of its event, for the Redis database
        ``db`` (kombu's fanout channel for events names it: "/{db}.celeryev/task.sent")."""
        channel = f"/{db}.{EVENT_EXCHANGE}/{EVENT_ROUTING_KEY}"
        commands: list[tuple[str, str, bytes]] = []
        for name, ids, queue in tasks:
            headers, properties, body = self.message(name, _args(name, ids), countdown=countdown)
            commands.append(("lpush", queue, _envelope(
                body, headers, {**properties, "delivery_mode": 2}, exchange="", routing_key=queue,
            )))
            if self.events:
                event = self._event(headers, queue, "", queue)
                commands.append(("publish", channel, _envelope(
                    event, {"hostname": headers["origin"]}, {"delivery_mode": 1},
                    exchange=EVENT_EXCHANGE, routing_key=EVENT_ROUTING_KEY,
                )))
        return commands

    @staticmethod
    def _with_retries(send: Callable[[], object], transient: tuple[type[Exception], ...]) -> None:
        """``send()``, again after a pause when it fails with one of ``transient``, as often
        as :data:`PUBLISH_RETRY_POLICY` says."""
        tries = 1 + int(PUBLISH_RETRY_POLICY["max_retries"])
        for attempt in range(1, tries + 1):
            try:
                send()
                return
            except transient:
                if attempt == tries:
                    raise
                time.sleep(PUBLISH_RETRY_POLICY["interval_start"])

    def _redis_client(self) -> Any:
        """This process's client of the broker's Redis (through Sentinel for a sentinel://
        URL), made on first use; redis-py gives a forked child connections of its own."""
        with self._lock:
            if self._redis is None:
                from worker.redisconn import client_for

                self._redis = client_for(self.url, self.transport_options.get("master_name"))
                self._redis_db = int(self._redis.connection_pool.connection_kwargs.get("db", 0))
            return self._redis

    def close(self) -> None:
        """Close this process's connections (a later publish opens new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.connections.force_close_all()
            pool.force_close_all()

    # -- one task ------------------------------------------------------------------------

    def message(
        self, name: str, args: list[Any], *, countdown: float | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]]:
        """The task's headers, properties and body, as ``Celery.send_task`` makes them."""
        task_id = str(uuid.uuid4())
        eta = None
        if countdown:
            eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat()
        argsrepr = repr(args)
        if len(argsrepr) > ARGSREPR_MAX:
            argsrepr = argsrepr[: ARGSREPR_MAX - 3] + "..."
        headers: dict[str, Any] = {
            "lang": "py",
            "task": name,
            "id": task_id,
            "shadow": None,
            "eta": eta,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            # as send_task leaves them: the worker applies its task's own limits
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "origin": _origin(),
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        properties = {"correlation_id": task_id, "reply_to": self._reply_to}
        embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        body: tuple[Any, ...] = (args, {}, embed)
        return headers, properties, body

    def _send(
        self, producer: Any, name: str, args: list[Any], queue_name: str,
        countdown: float | None,
    ) -> None:
        from kombu.entity import Exchange

        headers, properties, body = self.message(name, args, countdown=countdown)
        queue = self.queues[queue_name]
        exchange: Any
        declare: list[Any] | None
        if self.amqp:
            exchange, routing_key, declare = queue.exchange.name, queue.routing_key, [queue]
            if countdown and countdown > 0:
                # RabbitMQ's native delayed delivery, as Celery routes a countdown to a
                # quorum queue: through the delay exchange, by a key that spells the delay
                from kombu.transport.native_delayed_delivery import calculate_routing_key

                exchange = Exchange(DELAYED_EXCHANGE, type="topic")
                routing_key = calculate_routing_key(int(countdown), queue.routing_key)
                declare = None
        else:
            exchange, routing_key, declare = "", queue_name, [queue]
        options: dict[str, Any] = {}
        if self.confirm_timeout is not None:
            options["confirm_timeout"] = self.confirm_timeout
        producer.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            serializer="json",
            compression=None,
            retry=True,
            retry_policy=dict(PUBLISH_RETRY_POLICY),
            delivery_mode=2,
            declare=declare,
            headers=headers,
            timeout=None,
            **options,
            **properties,
        )
        if self.events:
            self._sent_event(producer, headers, queue_name, exchange, routing_key)

    def _sent_event(
        self, producer: Any, headers: Mapping[str, Any], queue: str, exchange: Any,
        routing_key: str,
    ) -> None:
        """The ``task-sent`` event Celery sends with ``task_send_sent_event``."""
        from kombu.entity import Exchange

        event = self._event(headers, queue, getattr(exchange, "name", exchange), routing_key)
        events = Exchange(EVENT_EXCHANGE, type="topic" if self.amqp else "fanout")
        producer.publish(
            event,
            routing_key=EVENT_ROUTING_KEY,
            exchange=EVENT_EXCHANGE,
            retry=True,
            retry_policy=dict(PUBLISH_RETRY_POLICY),
            declare=[events],
            serializer="json",
            headers={"hostname": headers["origin"]},
            delivery_mode=1,
        )

    def _event(
        self, headers: Mapping[str, Any], queue: str, exchange: str, routing_key: str
    ) -> dict[str, Any]:
        """The ``task-sent`` event of the task ``headers`` describe, as Celery makes it."""
        with self._lock:
            self._clock += 1
            clock = self._clock
        return {
            "hostname": headers["origin"],
            "utcoffset": (time.altzone if time.daylight else time.timezone) // 3600,
            "pid": os.getpid(),
            "clock": clock,
            "uuid": headers["id"],
            "root_id": headers["root_id"],
            "parent_id": None,
            "name": headers["task"],
            "args": headers["argsrepr"],
            "kwargs": headers["kwargsrepr"],
            "retries": 0,
            "eta": headers["eta"],
            "expires": None,
            "queue": queue,
            "exchange": exchange,
            "routing_key": routing_key,
            "timestamp": time.time(),
            "type": "task-sent",
        }

    # -- connections ---------------------------------------------------------------------

    def _producers(self) -> Any:
        """This process's producer pool, made on first use (again in a forked child)."""
        pid = os.getpid()
        with self._lock:
            if self._pool is None or self._pid != pid:
                from kombu.connection import Connection
                from kombu.pools import ProducerPool

                connection = Connection(
                    self.url,
                    transport_options=self.transport_options,
                    connect_timeout=BROKER_CONNECT_TIMEOUT_SECONDS,
                )
                connections = connection.Pool(limit=POOL_LIMIT)
                self._pool = ProducerPool(connections, limit=POOL_LIMIT)
                self._pid = pid
            return self._pool


def broker_publisher(settings: Settings, *, oneshot: bool = False) -> BrokerPublisher:
    """A :class:`BrokerPublisher` for the broker ``settings`` name, with the options
    ``fibosms.celeryapp.config`` gives the Celery app (events as Celery would send them).

    ``oneshot``: for a process that publishes once and exits (see :class:`BrokerPublisher`).
    """
    return BrokerPublisher(
        settings.broker_url,
        batch_size=settings.bulk_batch_size,
        transport_options=transport_options(settings),
        events=settings.task_events and has_fanout(settings.broker_url),
        oneshot=oneshot,
        **publish_options(settings.broker_url),
    )


def _envelope(
    body: Any, headers: Mapping[str, Any], properties: Mapping[str, Any], *, exchange: str,
    routing_key: str,
) -> bytes:
    """A message as kombu's Redis transport stores it: JSON, the body JSON in base64."""
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps({
        "body": encoded,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }).encode()


def _args(name: str, ids: list[int]) -> list[Any]:
    """A task's arguments: send_batch([id, …]), send_sms(id)."""
    return [ids] if name == SEND_BATCH_TASK else [ids[0]]


def _publish(
    items: Sequence[tuple[int, str]],
    batch_size: int,
    countdown: float | None,
    whole_seconds: bool,
    each: Callable[[list[_Task], float | None], Iterator[None]],
) -> list[int]:
    """What both publishers do around sending: group the items into tasks, round the countdown
    up to whole seconds where the broker needs it, send through ``each`` (which yields once
    per task sent), and leave what was not sent to the sweep; the ids not published."""
    if not items:
        return []
    tasks = _tasks(items, batch_size)
    if countdown is not None and whole_seconds and countdown > 0:
        countdown = float(math.ceil(countdown))
    done = 0
    try:
        for _ in each(tasks, countdown):
            done += 1
    except Exception as exc:  # the broker is down or unreachable: leave it to the sweep
        log.warning(
            "publish failed for %d of %d tasks; the sweep will publish them (%s)",
            len(tasks) - done,
            len(tasks),
            type(exc).__name__,
        )
    return _unpublished(tasks, done)


def _unpublished(tasks: Sequence[_Task], done: int) -> list[int]:
    """The message ids of the tasks after the first ``done``: left to the sweep."""
    return [mid for _, ids, _ in tasks[done:] for mid in ids]


def _origin() -> str:
    """This process's name as Celery gives it a publisher that is not a worker."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def _tasks(
    items: Sequence[tuple[int, str]], batch_size: int
) -> list[_Task]:
    """(task name, message ids, queue): bulk ids in batches, the others one by one."""
    tasks = [(SEND_TASK, [mid], queue) for mid, queue in items if queue != BATCHED_QUEUE]
    bulk = [mid for mid, queue in items if queue == BATCHED_QUEUE]
    for start in range(0, len(bulk), batch_size):
        tasks.append((SEND_BATCH_TASK, bulk[start : start + batch_size], BATCHED_QUEUE))
    return tasks
