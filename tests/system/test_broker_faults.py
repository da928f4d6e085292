"""The broker loses everything, or goes away: the ledger keeps every message, once.

Each scenario runs its own redis-server (the machine's shared Redis is never flushed or
stopped), a real worker and a real beat whose sweep runs every second, on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack, wait_for
from tests.system.infra import PrivateRedis, Producers, count_by_status, wait_until_final

pytestmark = pytest.mark.system

CONCURRENCY = 8


@pytest.fixture
def stack(
    make_stack: Callable[..., Stack],
    pg_url: str,
    private_redis: PrivateRedis,
    beat: Callable[[Stack], Path],
) -> Stack:
    s = make_stack(
        pg_url,
        private_redis.url,
        FIBOSMS_SWEEP_SECONDS="1",
        FIBOSMS_REPUBLISH_AFTER_SECONDS="3",
        FIBOSMS_SENDING_TIMEOUT_SECONDS="5",
    )
    clean_ledger(s.db)
    s.start_worker(concurrency=CONCURRENCY)
    beat(s)
    return s


def sent_once(sandbox: Any, texts: list[str]) -> tuple[list[str], dict[str, int]]:
    """(texts the gateway never accepted, texts it accepted more than once with the count)."""
    accepted = Counter(m.text for m in sandbox.accepted())
    twice = {t: accepted[t] for t in texts if accepted[t] > 1}
    return [t for t in texts if accepted[t] == 0], twice


@pytest.mark.timeout(150)
def test_a_broker_wiped_mid_run_loses_nothing_and_sends_nothing_twice(
    stack: Stack, private_redis: PrivateRedis, sandbox: Any, figures: dict[str, Any]
) -> None:
    messages = 1000
    texts = [f"flush test message {i:04d}" for i in range(messages)]
    started = time.monotonic()
    stack.producer.enqueue_many(
        [{"phone": f"0913{i:06d}", "text": t} for i, t in enumerate(texts)], kind="transactional"
    )
    # Given a run a quarter done, with most tasks still waiting in Redis
    wait_for(lambda: count_by_status(stack.db).get("sent", 0) >= messages // 4, timeout=60)
    with private_redis.client() as r:
        waiting = sum(int(r.llen(q)) for q in ("default", "urgent", "bulk"))
        # When the broker loses everything (FLUSHALL: queues, unacked tasks, bindings, locks)
        r.flushall()
    sent_at_flush = count_by_status(stack.db).get("sent", 0)
    # Then the sweep publishes again what the broker lost, and every message is sent
    recovery = wait_until_final(
        stack.db, {"sent": messages}, timeout=90,
        what="after the broker was wiped, not every message was sent",
    )
    elapsed = time.monotonic() - started
    stack.stop_workers()
    # each exactly once
    lost, twice = sent_once(sandbox, texts)
    assert lost == [], f"after the broker was wiped, never sent: {lost[:10]}"
    assert twice == {}, f"after the broker was wiped, sent more than once: {twice}"
    figures.update(
        messages=messages,
        tasks_wiped_from_queues=waiting,
        sent_before_flush=sent_at_flush,
        lost=len(lost),
        duplicates=sum(n - 1 for n in twice.values()),
        seconds_to_finish_after_flush=round(recovery, 1),
        seconds=round(elapsed, 1),
    )


@pytest.mark.timeout(150)
def test_with_the_broker_gone_for_20s_enqueue_keeps_accepting_fast_and_nothing_is_lost(
    stack: Stack, private_redis: PrivateRedis, sandbox: Any, figures: dict[str, Any]
) -> None:
    assert private_redis.proc is not None
    # each send takes a moment, so that tasks are running when the broker freezes: their
    # acknowledgements fail, which is what once made the worker exit (worker/compat.py)
    sandbox.configure(delay=0.2)
    with Producers(stack, threads=2, every=0.1) as producers:
        time.sleep(3)
        # Given producers enqueuing steadily, when Redis stops answering for 10 seconds
        # (frozen: connections open, no reply — a hung host or a network dropping packets)
        down_at = time.monotonic()
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        time.sleep(10.0)
        frozen_until = time.monotonic()
        # then is gone for 10 more seconds (connections refused), and comes back empty
        os.kill(private_redis.proc.pid, signal.SIGKILL)
        private_redis.proc.wait(timeout=10)
        time.sleep(20.0 - (time.monotonic() - down_at))
        private_redis.start()
        up_at = time.monotonic()
        time.sleep(4)
    results = producers.results
    during = [r for r in results if down_at <= r.at < up_at]
    frozen = [r for r in during if r.at < frozen_until]
    # Then the worker rode out the outage (it was not restarted)
    dead = [p.returncode for p in stack.workers if p.poll() is not None]
    assert dead == [], f"the worker exited during the broker outage (exit codes {dead})"
    errors = [r.error for r in results if r.error]
    # Then enqueue kept accepting: every call returned an id (the row is committed)
    assert errors == [], f"enqueue failed while the broker was down: {errors[:5]}"
    assert len(frozen) >= 5 and len(during) - len(frozen) >= 20, (
        f"too few enqueues during the outage to judge: {len(frozen)} frozen, {len(during)} in all"
    )
    # and no caller was held for long
    worst = max(r.latency for r in during)
    assert worst < 5.0, f"enqueue blocked its caller for {worst:.2f} s with the broker down"
    # and every message accepted before, during and after the outage is sent, once
    total = len(results)
    recovery = wait_until_final(
        stack.db, {"sent": total}, timeout=60,
        what="after a 20 s broker outage, not every accepted message was sent",
    )
    stack.stop_workers()
    lost, twice = sent_once(sandbox, list(producers.texts.values()))
    assert lost == [], f"after the broker outage, never sent: {lost[:10]}"
    assert twice == {}, f"after the broker outage, sent more than once: {twice}"
    figures.update(
        messages=total,
        enqueued_during_outage=len(during),
        outage_seconds=round(up_at - down_at, 1),
        max_enqueue_latency_during_outage_s=round(worst, 3),
        max_enqueue_latency_broker_frozen_s=round(max(r.latency for r in frozen), 3),
        max_enqueue_latency_broker_refusing_s=round(
            max(r.latency for r in during if r not in frozen), 3
        ),
        median_enqueue_latency_during_outage_s=round(
            statistics.median(r.latency for r in during), 3
        ),
        max_enqueue_latency_otherwise_s=round(
            max(r.latency for r in results if r not in during), 3
        ),
        lost=len(lost),
        duplicates=sum(n - 1 for n in twice.values()),
        seconds_to_finish_after_broker_back=round(recovery + 4, 1),
    )
