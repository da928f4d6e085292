"""Brokers that fail over or restart under load: Redis Sentinel, RabbitMQ.

- The Redis primary is killed (SIGKILL) while producers enqueue and workers send; Sentinel
  promotes the replica. Enqueue keeps answering (a publish that fails leaves the committed
  row to the sweep), nothing accepted is lost, and the shared rate limit and breaker reach
  the new primary through Sentinel.
- RabbitMQ (a private node, quorum queues) is stopped and started under load
  (``rabbitmqctl stop_app`` / ``start_app``): nothing lost, nothing sent twice outside
  recorded ambiguity.

Each test prints its figures at the end of the run.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.brokers import PrivateRabbit, SentinelGroup, sentinel_group
from tests.fixtures.services import clean_ledger, require
from tests.fixtures.stack import Stack, wait_for
from tests.system.infra import Producers
from worker.breaker import RedisBreaker
from worker.brokerstate import marker_for
from worker.ledger.models import Message
from worker.ratelimit import BUCKET_KEY
from worker.redisconn import state_client
from worker.sweep import sweep

pytestmark = pytest.mark.system


def settle(stack: Stack, ids: list[int], timeout: float = 90) -> None:
    marker = marker_for(stack.settings)

    def done() -> bool:
        sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher, marker=marker)
        with stack.db.sessions() as session:
            moving = session.scalar(
                select(Message.id).where(
                    Message.id.in_(ids), Message.status.in_(("queued", "sending", "retrying"))
                ).limit(1)
            )
        return moving is None

    try:
        wait_for(done, timeout=timeout, every=1.0)
    except AssertionError:
        raise AssertionError(f"not settled; broker holds {broker_view(stack)}") from None


def broker_view(stack: Stack) -> dict[str, object]:
    """What the broker's Redis holds, for a failure message."""
    from worker.redisconn import broker_client

    client = broker_client(stack.settings)
    if client is None:
        return {}
    try:
        view: dict[str, object] = {}
        for key in client.keys("*"):
            name = key.decode() if isinstance(key, bytes) else str(key)
            view[name] = client.llen(name) if client.type(name) in (b"list", "list") else "…"
        return view
    finally:
        client.close()


def accounted(stack: Stack, sandbox: Any, ids: list[int]) -> dict[str, Any]:
    accepted = Counter(m.phone for m in sandbox.accepted())
    with stack.db.sessions() as session:
        rows = list(session.scalars(select(Message).where(Message.id.in_(ids))))
    return {
        "rows": len(rows),
        "statuses": dict(Counter(m.status for m in rows)),
        "calls_accepted": sum(accepted[m.recipient] for m in rows),
        "ambiguous_recorded": sum(m.ambiguous_attempts for m in rows),
        "unaccounted": [
            m.id for m in rows
            if accepted[m.recipient] > (1 if m.status == "sent" else 0) + m.ambiguous_attempts
        ],
        "sent_never_accepted": [
            m.id for m in rows if m.status == "sent" and accepted[m.recipient] == 0
        ],
    }


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path, replicas=1, sentinels=3, down_after_ms=1000) as group:
        yield group


@pytest.mark.timeout(150)
def test_the_redis_primary_killed_under_load_sentinel_promotes_and_nothing_is_lost(
    make_stack: Callable[..., Stack],
    pg_url: str,
    sentinels: SentinelGroup,
    sandbox: Any,
    figures: dict[str, Any],
) -> None:
    stack = make_stack(
        pg_url, sentinels.url, **sentinels.env(),
        FIBOSMS_RATE_LIMIT="200", FIBOSMS_REPUBLISH_AFTER_SECONDS="3",
    )
    clean_ledger(stack.db)
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    first = sentinels.master_port()
    assert first is not None
    # Given producers enqueueing and workers sending through the Sentinel-managed primary
    with Producers(stack, threads=3, every=0.05, prefix="0917") as producers:
        time.sleep(3)
        # When the primary dies without a goodbye
        killed_at = time.monotonic()
        sentinels.kill(first)
        # Then Sentinel promotes the replica
        wait_for(lambda: sentinels.master_port() not in (None, first), timeout=30, every=0.1)
        promoted_s = time.monotonic() - killed_at
        time.sleep(3)  # producers keep going on the new primary
    results = producers.results
    ids = [r.message_id for r in results if r.message_id is not None]
    refused = [r for r in results if r.error is not None]
    settle(stack, ids)
    stack.stop_workers()
    found = accounted(stack, sandbox, ids)
    during = [r.latency for r in results if killed_at <= r.at <= killed_at + promoted_s + 1]
    # and the shared state lives on the new primary: the rate limit's schedule, the breaker
    client = state_client(stack.settings)
    assert client is not None
    bucket_on_new_primary = bool(client.exists(BUCKET_KEY))
    breaker = RedisBreaker(client, threshold=2, cooldown=5)
    breaker.failure()
    breaker.failure()
    breaker_opened = breaker.wait_seconds() > 0
    breaker.success()
    breaker_closed = breaker.wait_seconds() == 0
    client.close()
    figures.update(
        enqueued=len(ids),
        refused=len(refused),
        promoted_after_s=round(promoted_s, 1),
        enqueue_max_s_during_failover=round(max(during, default=0.0), 2),
        enqueued_during_failover=len(during),
        **{k: v for k, v in found.items() if not isinstance(v, list)},
    )
    # enqueue kept answering: accepted, or refused cleanly (none were, here)
    assert all(r.error is None or "Error" in r.error for r in results)
    assert len(ids) > 50
    # nothing accepted is lost, and a second send only after a recorded ambiguity
    assert found["rows"] == len(ids)
    assert set(found["statuses"]) == {"sent"}, found["statuses"]
    assert found["unaccounted"] == [] and found["sent_never_accepted"] == []
    assert bucket_on_new_primary and breaker_opened and breaker_closed


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    require(shutil.which("rabbitmq-server") is not None, "rabbitmq-server is not installed")
    node = PrivateRabbit()
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.mark.timeout(170)
def test_rabbitmq_restarted_under_load_loses_nothing_and_sends_nothing_twice(
    make_stack: Callable[..., Stack],
    pg_url: str,
    rabbit: PrivateRabbit,
    sandbox: Any,
    figures: dict[str, Any],
) -> None:
    stack = make_stack(pg_url, rabbit.url, FIBOSMS_REPUBLISH_AFTER_SECONDS="3")
    clean_ledger(stack.db)
    stack.start_worker(concurrency=4)
    # Given producers enqueueing and a worker sending through RabbitMQ's quorum queues
    with Producers(stack, threads=3, every=0.05, prefix="0918") as producers:
        time.sleep(3)
        # When RabbitMQ stops and starts again
        stopped_at = time.monotonic()
        rabbit.stop_app()
        time.sleep(3)
        rabbit.start_app()
        down_s = time.monotonic() - stopped_at
        time.sleep(3)
    results = producers.results
    ids = [r.message_id for r in results if r.message_id is not None]
    during = [r.latency for r in results if stopped_at <= r.at <= stopped_at + down_s]
    with stack.db.sessions() as session:
        unpublished = len(list(session.scalars(
            select(Message.id).where(Message.id.in_(ids), Message.published_at.is_(None))
        )))
    # Then the worker reconnects, the sweep publishes what could not be, and all is sent
    settle(stack, ids, timeout=100)
    stack.stop_workers()
    found = accounted(stack, sandbox, ids)
    figures.update(
        enqueued=len(ids),
        refused=sum(1 for r in results if r.error is not None),
        broker_down_s=round(down_s, 1),
        enqueued_while_down=len(during),
        enqueue_max_s_while_down=round(max(during, default=0.0), 2),
        left_to_sweep=unpublished,
        **{k: v for k, v in found.items() if not isinstance(v, list)},
    )
    assert [r.error for r in results if r.error is not None] == []
    assert found["rows"] == len(ids)
    assert set(found["statuses"]) == {"sent"}, found["statuses"]
    assert found["unaccounted"] == [] and found["sent_never_accepted"] == []
    # without any recorded ambiguity, nothing went out twice
    if found["ambiguous_recorded"] == 0:
        assert found["calls_accepted"] == len(ids)
