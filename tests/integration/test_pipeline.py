"""End to end: producer → broker → a real Celery worker process → the sandbox over HTTP.

Redis with both databases; Redis Sentinel and RabbitMQ (quorum queues) with PostgreSQL; and
the embedded default (SQLite database and broker).
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.stack import Stack, statuses, wait_for
from worker.ledger.models import Failure, Message
from worker.sweep import sweep

PHONE = "0912345678"


#: (database, broker): Redis with both databases; the other brokers with PostgreSQL only,
#: which is what runs beside them in production (and keeps the run short)
COMBINATIONS = [
    ("sqlite", "redis"),
    ("postgresql", "redis"),
    ("postgresql", "sentinel"),
    ("postgresql", "rabbitmq"),
]


@pytest.fixture(params=COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def stack(make_stack: Callable[..., Stack], request: pytest.FixtureRequest) -> Stack:
    from tests.fixtures.brokers import purge_queues
    from tests.fixtures.services import clean_ledger

    database, broker = request.param
    db_url = str(request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url"))
    env: dict[str, str] = {}
    if broker == "redis":
        broker_url = str(request.getfixturevalue("redis_url"))
    elif broker == "sentinel":
        group = request.getfixturevalue("sentinel_broker")
        group.master().flushall()
        broker_url, env = group.url, group.env()
    else:
        broker_url = request.getfixturevalue("rabbit_vhost").url
        purge_queues(broker_url)
    s = make_stack(db_url, broker_url, **env)
    if broker == "rabbitmq":
        # a worker's warm shutdown on RabbitMQ idles ~10 s in its event loop; what a test
        # checks is done by then, and RabbitMQ requeues what a killed worker held
        request.addfinalizer(lambda: s.stop_workers(signal.SIGKILL))
    clean_ledger(s.db)
    return s


def lose_the_queues(stack: Stack) -> None:
    """What a broker that forgets does: a Redis flush; on RabbitMQ, a purge by hand."""
    from tests.fixtures.brokers import purge_queues
    from tests.fixtures.services import empty_redis
    from worker.redisconn import broker_client

    client = broker_client(stack.settings)
    if client is None:
        purge_queues(stack.settings.broker_url)
        return
    empty_redis(client)
    client.close()


def message(stack: Stack, mid: int) -> Message:
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
        assert m is not None
        return m


def failures(stack: Stack, mid: int) -> list[Failure]:
    with stack.db.sessions() as session:
        return list(session.scalars(select(Failure).where(Failure.message_id == mid)))


def final(stack: Stack, mid: int, timeout: float = 30) -> Message:
    wait_for(lambda: message(stack, mid).status in ("sent", "dead", "expired"), timeout=timeout)
    return message(stack, mid)


def accepted_for(sandbox: Any, phone: str) -> int:
    return sum(1 for m in sandbox.accepted() if m.phone[-9:] == phone[-9:])


def test_a_message_is_sent_once_through_a_real_worker(stack: Stack, sandbox: Any) -> None:
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "Xin chào, đơn hàng #42 đã được giao", kind="otp")
    m = final(stack, mid)
    assert (m.status, m.attempts, m.last_code, m.service_type) == ("sent", 1, 200, 1)
    [got] = sandbox.accepted()
    assert (got.phone, got.text, got.service_type, got.sender) == (
        PHONE, "Xin chào, đơn hàng #42 đã được giao", 1, "FIBOTEST"
    )


def test_transient_codes_are_retried_with_backoff_until_sent(stack: Stack, sandbox: Any) -> None:
    sandbox.script(PHONE, [{"code": 2}, {"code": 13}, {"code": 27}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "hello")
    m = final(stack, mid)
    assert (m.status, m.attempts, m.last_code) == ("sent", 4, 200)
    assert failures(stack, mid) == []
    calls = [c for c in sandbox.calls() if c.operation == "SendMaskedSMS"]
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(calls)]
    assert len(gaps) == 3
    # base 0.2 s, max 0.5 s: each wait lies inside the window (a little slack for scheduling)
    assert all(0.18 <= g <= 2.5 for g in gaps), gaps


def test_a_spent_retry_budget_is_dead_lettered_with_the_attempt_count(
    stack: Stack, sandbox: Any
) -> None:
    sandbox.script(PHONE, [{"code": 2}] * 4)  # FIBOSMS_MAX_ATTEMPTS=4 in tests
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "hello")
    m = final(stack, mid)
    assert (m.status, m.attempts) == ("dead", 4)
    [f] = failures(stack, mid)
    assert (f.code, f.cls, f.attempts) == (2, "transient", 4)
    assert "system error" in f.meaning and "4 attempts" in f.meaning
    assert accepted_for(sandbox, PHONE) == 0


@pytest.mark.parametrize("code", [7, 10])
def test_a_permanent_code_is_dead_lettered_at_once(stack: Stack, sandbox: Any, code: int) -> None:
    sandbox.script(PHONE, [{"code": code}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "hello")
    m = final(stack, mid)
    assert (m.status, m.attempts, m.last_code) == ("dead", 1, code)
    [f] = failures(stack, mid)
    assert (f.code, f.cls, f.attempts) == (code, "permanent", 1)


def test_an_account_wide_code_is_dead_lettered_with_its_class(
    stack: Stack, sandbox: Any
) -> None:
    sandbox.set_balance(0)
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "hello")
    m = final(stack, mid)
    assert (m.status, m.last_code) == ("dead", 14)
    [f] = failures(stack, mid)
    assert (f.cls, f.meaning) == ("account", "insufficient balance")


def test_an_ambiguous_otp_is_sent_again_and_recorded_as_such(stack: Stack, sandbox: Any) -> None:
    # the first answer comes after the 1 s read timeout: the gateway did accept it
    sandbox.script(PHONE, [{"delay": 1.5}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "OTP 111111", kind="otp")
    m = final(stack, mid)
    assert (m.status, m.attempts, m.ambiguous_attempts) == ("sent", 2, 1)
    wait_for(lambda: accepted_for(sandbox, PHONE) == 2, timeout=5)


def test_duplicate_content_after_an_ambiguous_attempt_counts_as_sent(
    stack: Stack, sandbox: Any
) -> None:
    sandbox.script(PHONE, [{"delay": 1.5}, {"code": 6}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "OTP 222222", kind="otp")
    m = final(stack, mid)
    assert (m.status, m.last_code, m.ambiguous_attempts) == ("sent", 6, 1)
    assert failures(stack, mid) == []


def test_an_ambiguous_marketing_message_is_dead_lettered_as_outcome_unknown(
    stack: Stack, sandbox: Any
) -> None:
    sandbox.script(PHONE, [{"drop": True}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "Sale 50%", kind="marketing")
    m = final(stack, mid)
    assert (m.status, m.attempts, m.ambiguous_attempts) == ("dead", 1, 1)
    [f] = failures(stack, mid)
    assert (f.cls, f.meaning) == ("ambiguous", "outcome unknown")


def test_a_task_delivered_many_times_sends_once(stack: Stack, sandbox: Any) -> None:
    stack.start_worker(concurrency=8)
    mid = stack.producer.enqueue_sms(PHONE, "once")
    stack.publisher.publish([(mid, "default")] * 20)
    assert final(stack, mid).status == "sent"
    stack.stop_workers()  # every duplicate has been consumed once the worker drained
    assert accepted_for(sandbox, PHONE) == 1
    assert message(stack, mid).attempts == 1


def test_after_a_broker_flush_the_sweep_publishes_what_was_lost(
    stack: Stack, sandbox: Any
) -> None:
    # Given 30 accepted messages whose tasks the broker then loses
    ids = [stack.producer.enqueue_sms(f"09123{i:05d}", f"m{i}") for i in range(30)]
    lose_the_queues(stack)
    stack.start_worker()
    assert set(statuses(stack.db, ids).values()) == {"queued"}
    # When the sweep runs after the republish window (5 s in tests)
    import time

    time.sleep(5.1)
    report = sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher)
    # Then every message is sent, each exactly once
    assert report.published == 30
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=30)
    assert len(sandbox.accepted()) == 30


def test_a_broker_flush_is_noticed_and_the_next_sweep_publishes_at_once(
    stack: Stack, sandbox: Any
) -> None:
    from worker.brokerstate import RedisBrokerMarker
    from worker.redisconn import broker_client

    client = broker_client(stack.settings)
    if client is None:
        pytest.skip("RabbitMQ's quorum queues keep their messages: no marker to lose")
    marker = RedisBrokerMarker(client)
    # Given a sweep that left its marker beside the queues, then 30 accepted messages
    sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher, marker=marker)
    ids = [stack.producer.enqueue_sms(f"09124{i:05d}", f"m{i}") for i in range(30)]
    # When the broker loses everything (a flush; a restart of a Redis that keeps nothing)
    from tests.fixtures.services import empty_redis

    empty_redis(client)
    stack.start_worker()
    # Then the very next pass notices, without waiting for the republish window
    report = sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher, marker=marker)
    assert report.broker_lost == 30 and report.published == 30
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=30)
    assert len(sandbox.accepted()) == 30
    # and the marker is back: a pass after that publishes nothing again
    again = sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher, marker=marker)
    assert (again.broker_lost, again.published) == (0, 0)


def test_a_dead_letter_replayed_is_sent_and_keeps_its_history(stack: Stack, sandbox: Any) -> None:
    from worker.replay import replay

    sandbox.script(PHONE, [{"code": 5}])
    stack.start_worker()
    mid = stack.producer.enqueue_sms(PHONE, "hello")
    assert final(stack, mid).status == "dead"
    assert replay(stack.db, stack.publisher, message_ids=[mid]) == [mid]
    m = final(stack, mid)
    # the row counts both calls that went out; the budget starts afresh from the replay
    assert (m.status, m.attempts, m.attempts_at_replay, m.claims) == ("sent", 2, 1, 2)
    [f] = failures(stack, mid)
    assert f.code == 5 and f.replayed_at is not None


def test_the_embedded_default_sqlite_database_and_broker_send_end_to_end(
    make_stack: Callable[..., Stack], sandbox: Any, tmp_path: Any
) -> None:
    from worker.ledger.migrate import upgrade

    db_url = f"sqlite:///{tmp_path}/embedded.db"
    upgrade(db_url)
    stack = make_stack(db_url, f"sqla+sqlite:///{tmp_path}/broker.db")
    sandbox.script(PHONE, [{"code": 2}])
    stack.start_worker()
    ids = [stack.producer.enqueue_sms(PHONE, f"m{i}") for i in range(5)]
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=40)
    assert len(sandbox.accepted()) == 5
