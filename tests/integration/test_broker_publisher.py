"""worker.publish.BrokerPublisher: Celery's task messages, written through kombu alone.

What it publishes is compared with what the Celery app's ``send_task`` publishes for the
same task on the same broker (headers, properties, body, where it was routed), and real
workers run what it publishes. On Redis each comparison is made twice: through redis-py,
and ``oneshot`` through worker.resp (the wire protocol spoken directly, ``fibosms send``).
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kombu import Connection

from tests.fixtures.stack import Stack, statuses, wait_for
from worker.brokers import SEND_BATCH_TASK, SEND_TASK
from worker.ledger.models import Message
from worker.publish import BrokerPublisher, broker_publisher

#: header values that differ between any two tasks
PER_TASK_HEADERS = {"id", "root_id", "argsrepr", "eta"}
#: properties that differ between any two tasks or publishers (RabbitMQ repeats the
#: headers among them: compared above)
PER_TASK_PROPERTIES = {"correlation_id", "reply_to", "delivery_tag", "application_headers"}


def _broker(request: pytest.FixtureRequest, tmp_path: Any, kind: str) -> tuple[str, dict[str, str]]:
    from tests.fixtures.brokers import purge_queues

    if kind in ("redis", "redis-oneshot"):
        return str(request.getfixturevalue("redis_url")), {}
    if kind == "rabbitmq":
        url = request.getfixturevalue("rabbit_vhost").url
        purge_queues(url)
        return url, {}
    if kind == "sentinel":
        group = request.getfixturevalue("sentinel_broker")
        group.master().flushall()
        return group.url, group.env()
    return f"sqla+sqlite:///{tmp_path}/broker.db", {}


def take(stack: Stack, queue: str, count: int, timeout: float = 10.0) -> list[Any]:
    """``count`` raw messages off ``queue`` (acknowledged), as a consumer receives them."""
    from worker.publish import task_queues

    declared = {q.name: q for q in task_queues(stack.settings)}[queue]
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    with Connection(stack.settings.broker_url,
                    transport_options=dict(stack.app.conf.broker_transport_options)) as conn:
        bound = declared(conn.default_channel)
        while len(found) < count and time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
                continue
            found.append(message)
    assert len(found) == count, f"{len(found)} of {count} messages on {queue}"
    return found


@pytest.mark.parametrize("broker", ["redis", "redis-oneshot", "rabbitmq", "sqla"])
def test_a_task_is_published_exactly_as_celery_publishes_it(
    make_stack: Callable[..., Stack], sqlite_url: str, request: pytest.FixtureRequest,
    tmp_path: Any, broker: str,
) -> None:
    url, env = _broker(request, tmp_path, broker)
    stack = make_stack(sqlite_url, url, **env)
    direct = broker_publisher(stack.settings, oneshot=broker == "redis-oneshot")
    assert direct.speaks_wire == (broker == "redis-oneshot")
    try:
        for queue, items in (("default", [(101, "default")]),
                             ("bulk", [(201, "bulk"), (202, "bulk")])):
            assert stack.publisher.publish(items) == []
            assert direct.publish([(i + 1000, q) for i, q in items]) == []
            by_celery, by_kombu = take(stack, queue, 2)
            assert set(by_kombu.headers) == set(by_celery.headers)
            assert {k: v for k, v in by_kombu.headers.items() if k not in PER_TASK_HEADERS} == {
                k: v for k, v in by_celery.headers.items() if k not in PER_TASK_HEADERS
            }
            assert set(by_kombu.properties) == set(by_celery.properties)
            assert {k: v for k, v in by_kombu.properties.items()
                    if k not in PER_TASK_PROPERTIES} == {
                k: v for k, v in by_celery.properties.items() if k not in PER_TASK_PROPERTIES
            }
            assert (by_kombu.content_type, by_kombu.content_encoding) == (
                by_celery.content_type, by_celery.content_encoding
            )
            for key in ("exchange", "routing_key"):
                assert by_kombu.delivery_info.get(key) == by_celery.delivery_info.get(key)
            args_c, kwargs_c, embed_c = by_celery.decode()
            args_k, kwargs_k, embed_k = by_kombu.decode()
            assert (kwargs_k, embed_k) == (kwargs_c, embed_c)
            ids_c = args_c[0] if isinstance(args_c[0], list) else [args_c[0]]
            ids_k = args_k[0] if isinstance(args_k[0], list) else [args_k[0]]
            assert ids_k == [i + 1000 for i in ids_c]
            assert by_kombu.headers["argsrepr"] == repr(args_k)
            assert by_kombu.headers["task"] == (SEND_BATCH_TASK if queue == "bulk" else SEND_TASK)
            assert by_kombu.headers["id"] == by_kombu.properties["correlation_id"]
            assert by_kombu.headers["root_id"] == by_kombu.headers["id"]
    finally:
        direct.close()


@pytest.mark.parametrize("oneshot", [False, True], ids=["redis-py", "oneshot"])
def test_a_countdown_becomes_the_same_eta_header(
    make_stack: Callable[..., Stack], sqlite_url: str, redis_url: str, oneshot: bool
) -> None:
    stack = make_stack(sqlite_url, redis_url)
    direct = broker_publisher(stack.settings, oneshot=oneshot)
    before = datetime.now(UTC)
    assert stack.publisher.publish([(1, "default")], countdown=30) == []
    assert direct.publish([(2, "default")], countdown=30) == []
    by_celery, by_kombu = take(stack, "default", 2)
    etas = [datetime.fromisoformat(m.headers["eta"]) for m in (by_celery, by_kombu)]
    assert all(e.utcoffset() is not None for e in etas)
    assert abs((etas[1] - etas[0]).total_seconds()) < 5
    assert (etas[1] - before).total_seconds() >= 30
    assert by_kombu.headers["timelimit"] == by_celery.headers["timelimit"]
    direct.close()


@pytest.mark.parametrize(
    "database,broker",
    [("sqlite", "redis"), ("postgresql", "redis"), ("postgresql", "redis-oneshot"),
     ("postgresql", "rabbitmq"), ("sqlite", "sentinel"), ("sqlite", "sqla")],
)
def test_a_worker_sends_what_the_broker_publisher_published(
    make_stack: Callable[..., Stack], request: pytest.FixtureRequest, tmp_path: Any,
    sandbox: Any, database: str, broker: str,
) -> None:
    from producer.enqueue import Producer
    from tests.fixtures.services import clean_ledger

    db_url = str(request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url"))
    url, env = _broker(request, tmp_path, broker)
    stack = make_stack(db_url, url, **env)
    if broker == "rabbitmq":
        request.addfinalizer(lambda: stack.stop_workers(signal.SIGKILL))
    clean_ledger(stack.db)
    direct = broker_publisher(stack.settings, oneshot=broker == "redis-oneshot")
    producer = Producer(settings=stack.settings, db=stack.db, publisher=direct)
    phone = "0912345678"
    sandbox.script(phone, [{"code": 2}] * 3)
    ids = [producer.enqueue_sms(phone, "one"), producer.enqueue_sms(phone, "two", kind="otp")]
    ids += producer.enqueue_many([{"phone": phone, "text": "three"}])
    stack.start_worker()
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=40)
    assert len(sandbox.accepted()) == 3
    direct.close()


@pytest.mark.parametrize("oneshot", [False, True], ids=["redis-py", "oneshot"])
def test_with_the_broker_down_the_row_is_left_to_the_sweep(
    make_stack: Callable[..., Stack], sqlite_url: str, oneshot: bool
) -> None:
    from producer.enqueue import Producer
    from tests.fixtures.services import clean_ledger

    stack = make_stack(sqlite_url, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    clean_ledger(stack.db)
    publisher = broker_publisher(stack.settings, oneshot=oneshot)
    assert publisher.speaks_wire == oneshot
    producer = Producer(settings=stack.settings, db=stack.db, publisher=publisher)
    started = time.monotonic()
    mid = producer.enqueue_sms("0912345678", "hello")
    took = time.monotonic() - started
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
        assert m is not None and m.status == "queued" and m.published_at is None
    assert took < 10, f"the caller was blocked {took:.1f}s"


def test_rabbitmq_publishes_wait_for_the_confirm(
    make_stack: Callable[..., Stack], sqlite_url: str, rabbit_vhost: Any
) -> None:
    stack = make_stack(sqlite_url, rabbit_vhost.url)
    direct = broker_publisher(stack.settings)
    assert isinstance(direct, BrokerPublisher)
    assert direct.confirm_timeout == 2.0 and direct.whole_seconds
    assert direct.transport_options == {"confirm_publish": True}
    assert {q.name: q.queue_arguments for q in direct.queues.values()} == {
        name: {"x-queue-type": "quorum"} for name in ("urgent", "default", "bulk")
    }


def _raw(redis_url: str, queue: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    found = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    client.close()
    return found


@pytest.mark.parametrize("oneshot", [False, True], ids=["redis-py", "oneshot"])
def test_on_redis_the_stored_envelope_is_kombus(
    make_stack: Callable[..., Stack], sqlite_url: str, redis_url: str, oneshot: bool
) -> None:
    """Byte for byte where it can be: the JSON Celery (through kombu) leaves on the list."""
    stack = make_stack(sqlite_url, redis_url)
    direct = broker_publisher(stack.settings, oneshot=oneshot)
    assert stack.publisher.publish([(7, "urgent")]) == []
    assert direct.publish([(7, "urgent")]) == []
    by_celery, by_kombu = _raw(redis_url, "urgent")
    assert set(by_kombu) == set(by_celery)
    assert set(by_kombu["properties"]) == set(by_celery["properties"])
    for key in ("content-type", "content-encoding"):
        assert by_kombu[key] == by_celery[key]
    for key in ("delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert by_kombu["properties"][key] == by_celery["properties"][key]
    bodies = [json.loads(base64.b64decode(m["body"])) for m in (by_celery, by_kombu)]
    assert bodies[0] == bodies[1] == [[7], {}, {"callbacks": None, "errbacks": None,
                                              "chain": None, "chord": None}]


@pytest.mark.parametrize("oneshot", [False, True], ids=["redis-py", "oneshot"])
def test_on_redis_the_task_sent_event_is_celerys(
    make_stack: Callable[..., Stack], sqlite_url: str, redis_url: str, oneshot: bool
) -> None:
    """Flower learns of a task from its task-sent event: the same channel, envelope and
    fields whichever publisher sent it."""
    import redis

    stack = make_stack(sqlite_url, redis_url, FIBOSMS_TASK_EVENTS="true")
    direct = broker_publisher(stack.settings, oneshot=oneshot)
    assert direct.events
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.psubscribe("/*celeryev*")
    wait_for(lambda: listener.get_message(timeout=0.1) is not None)  # the subscription
    assert stack.publisher.publish([(8, "default")]) == []
    assert direct.publish([(9, "default")]) == []
    got: list[dict[str, Any]] = []

    def two_events() -> bool:
        message = listener.get_message(timeout=0.1)
        if message and message["type"] == "pmessage":
            got.append(message)
        return len(got) == 2

    wait_for(two_events, timeout=10)
    listener.close()
    by_celery, by_kombu = got
    assert by_kombu["channel"] == by_celery["channel"]
    envelopes = [json.loads(m["data"]) for m in got]
    assert set(envelopes[1]) == set(envelopes[0])
    assert envelopes[1]["headers"] == envelopes[0]["headers"]
    assert {k: v for k, v in envelopes[1]["properties"].items() if k != "delivery_tag"} == {
        k: v for k, v in envelopes[0]["properties"].items() if k != "delivery_tag"
    }
    events = [json.loads(base64.b64decode(e["body"])) for e in envelopes]
    assert set(events[1]) == set(events[0])
    same = {"hostname", "utcoffset", "pid", "parent_id", "name", "kwargs", "retries", "eta",
            "expires", "queue", "exchange", "routing_key", "type"}
    assert {k: events[1][k] for k in same} == {k: events[0][k] for k in same}
    assert (events[0]["args"], events[1]["args"]) == ("[8]", "[9]")
    assert events[1]["type"] == "task-sent"


def test_a_pooled_connection_killed_while_idle_is_replaced_unseen(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    """PostgreSQL restarted (its backends gone) while the producer sat idle: the next
    enqueue_sms tests the idle connection, finds it dead, and goes on with a new one."""
    from sqlalchemy import create_engine, text

    from producer.enqueue import Producer
    from worker.ledger.db import PING_AFTER_IDLE_SECONDS

    stack = make_stack(pg_url, redis_url)
    producer = Producer(
        settings=stack.settings, db=stack.db, publisher=broker_publisher(stack.settings)
    )
    first = producer.enqueue_sms("0912345678", "before")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database}).scalar_one()
    admin.dispose()
    assert killed >= 1
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
    second = producer.enqueue_sms("0912345678", "after")
    assert second > first
    assert statuses(stack.db, [first, second]) == {first: "queued", second: "queued"}


def test_a_connection_killed_moments_after_use_fails_one_call_then_heals(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    """Within a second of its last use a connection is trusted untested: if the server
    dropped it in that moment, that one enqueue fails (nothing recorded, the caller told),
    and the next one runs on a new connection."""
    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.exc import DBAPIError

    from producer.enqueue import Producer
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    producer = Producer(
        settings=stack.settings, db=stack.db, publisher=broker_publisher(stack.settings)
    )
    producer.enqueue_sms("0912345678", "before")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    admin.dispose()
    with pytest.raises(DBAPIError):
        producer.enqueue_sms("0912345678", "lost with its connection")
    producer.enqueue_sms("0912345678", "after")
    with stack.db.sessions() as session:
        texts = sorted(session.scalars(select(Message.text)))
        assert session.scalar(select(func.count()).select_from(Message)) == 2
    assert texts == ["after", "before"]


def test_threads_enqueueing_at_once_share_the_kept_connection_and_the_pool(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    import threading

    from producer.enqueue import Producer
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    producer = Producer(
        settings=stack.settings, db=stack.db, publisher=broker_publisher(stack.settings)
    )
    ids: list[int] = []
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for i in range(50):
                ids.append(producer.enqueue_sms(f"09123{n}{i:04d}", "hello"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == 300
    assert set(statuses(stack.db, ids).values()) == {"queued"}
    import redis

    client = redis.Redis.from_url(redis_url)
    assert client.llen("default") == 300
    client.close()
