"""The shared rate limit and circuit breaker in Redis, and the bulk path with a real worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import select

from tests.fixtures.stack import Stack, statuses, wait_for
from worker.breaker import RedisBreaker
from worker.ledger.models import Failure, Message
from worker.ratelimit import RedisRateLimiter


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_four_limiters_sharing_redis_never_exceed_the_rate(client: redis.Redis) -> None:
    # Given four "workers" sharing a bucket of 50/s with a burst of 10
    limiters = [RedisRateLimiter(client, rate=50, capacity=10, reserve=0) for _ in range(4)]
    stamps: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def take(limiter: RedisRateLimiter) -> None:
        while time.monotonic() < stop:
            if limiter.acquire(1, urgent=False, timeout=0.2):
                with lock:
                    stamps.append(time.monotonic())

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the rate was used: at least 2 s × 50
    assert len(stamps) >= 95, len(stamps)
    # and never exceeded: by any moment t, at most the burst plus 50/s since the first grant
    stamps.sort()
    for n, t in enumerate(stamps, start=1):
        allowed = 10 + 50 * (t - stamps[0]) + 1  # +1: rounding of the clock readings
        assert n <= allowed, (n, t - stamps[0])


def test_with_a_burst_of_one_no_sliding_second_sees_more_than_the_limit(
    client: redis.Redis,
) -> None:
    # Given four "workers" sharing the default schedule: 50/s, a burst of one token
    limiters = [RedisRateLimiter(client, rate=50, capacity=1, reserve=0.2) for _ in range(4)]
    stamps: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.2

    def take(limiter: RedisRateLimiter, urgent: bool) -> None:
        while time.monotonic() < stop:
            if limiter.acquire(1, urgent=urgent, timeout=0.2):
                with lock:
                    stamps.append(time.monotonic())

    threads = [
        threading.Thread(target=take, args=(lim, n == 0))
        for lim in limiters
        for n in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the rate was used, and no window of one second, wherever it starts, held more
    # than 50 grants (the grants are taken by Redis's clock; ours reads them a little later,
    # so one of slack for the reading)
    stamps.sort()
    assert len(stamps) >= 95, len(stamps)
    most = start = 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    assert most <= 51, most


def test_without_urgent_traffic_the_others_get_the_whole_rate(client: redis.Redis) -> None:
    # Given the default schedule (50/s, a burst of one, a reserve of 0.2) and only
    # non-urgent callers, four of them
    limiters = [RedisRateLimiter(client, rate=50, capacity=1, reserve=0.2) for _ in range(4)]
    stamps: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def take(limiter: RedisRateLimiter) -> None:
        while time.monotonic() < stop:
            if limiter.acquire(1, urgent=False, timeout=0.2):
                with lock:
                    stamps.append(time.monotonic())

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then they are spaced by the rate's interval, not stretched by the reserve they leave:
    # 2 s in the middle of the run held close to 100 grants (83 when each waited 0.2 more;
    # a waiter's wake-up on a loaded machine costs a few)
    stamps.sort()
    middle = [t for t in stamps if stamps[0] + 0.5 <= t < stamps[0] + 2.5]
    assert len(middle) >= 90, len(middle)


def test_the_urgent_reserve_is_kept_across_processes(client: redis.Redis) -> None:
    bulk = RedisRateLimiter(client, rate=1, capacity=10, reserve=0.5)
    otp = RedisRateLimiter(client, rate=1, capacity=10, reserve=0.5)
    taken = 0
    while bulk.acquire(1, urgent=False, timeout=0):
        taken += 1
    assert taken == 5
    assert sum(otp.acquire(1, urgent=True, timeout=0) for _ in range(6)) == 5


def test_the_breaker_state_is_shared_by_every_worker(client: redis.Redis) -> None:
    a = RedisBreaker(client, threshold=4, cooldown=0.5)
    b = RedisBreaker(client, threshold=4, cooldown=0.5)
    a.failure()
    b.failure()
    a.failure()
    assert b.wait_seconds() == 0
    b.failure()  # the fourth consecutive failure, counted across both
    assert a.wait_seconds() > 0 and b.wait_seconds() > 0
    time.sleep(0.6)
    assert a.wait_seconds() == 0  # the probe
    assert b.wait_seconds() > 0  # only one probe at a time
    a.success()
    assert b.wait_seconds() == 0


@pytest.fixture
def stack(make_stack: Callable[..., Stack], db_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(db_url, redis_url, FIBOSMS_BULK_BATCH_SIZE="25")
    clean_ledger(s.db)
    return s


def test_a_campaign_goes_out_in_batches_each_message_on_its_own_terms(
    stack: Stack, sandbox: Any
) -> None:
    sandbox.script("0912000007", [{"code": 2}])  # retried, then sent
    sandbox.script("0912000011", [{"code": 7}])  # refused for good
    stack.start_worker(concurrency=2)
    ids = stack.producer.enqueue_many(
        [{"phone": f"0912{i:06d}", "text": f"Khuyen mai {i}"} for i in range(200)]
    )
    wait_for(lambda: set(statuses(stack.db, ids).values()) <= {"sent", "dead"}, timeout=60)
    states = statuses(stack.db, ids)
    assert sorted(states.values()).count("dead") == 1
    with stack.db.sessions() as s:
        by_phone = {r: (st, a) for r, st, a in s.execute(
            select(Message.recipient, Message.status, Message.attempts))}
        [f] = s.scalars(select(Failure)).all()
    assert by_phone["0912000007"] == ("sent", 2)
    assert by_phone["0912000011"] == ("dead", 1) and f.code == 7
    assert by_phone["0912000001"] == ("sent", 1)
    assert len(sandbox.accepted()) == 199
    log = stack.logs[0].read_text()
    assert "send_batch of 25 messages" in log


def test_an_open_breaker_stops_calls_without_spending_attempts(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, sandbox: Any
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url, FIBOSMS_BREAKER_THRESHOLD="3",
                       FIBOSMS_BREAKER_COOLDOWN_SECONDS="2", FIBOSMS_MAX_ATTEMPTS="4")
    clean_ledger(stack.db)
    # Given a gateway failing with a system error for every call
    sandbox.script(None, [{"code": 2}] * 1000)
    stack.start_worker(concurrency=1)
    ids = [stack.producer.enqueue_sms(f"09123{i:05d}", f"m{i}") for i in range(20)]
    time.sleep(3)
    calls_while_failing = len(sandbox.calls())
    # Then the breaker opened after 3 failures: far fewer calls than 20 messages × 4 attempts,
    # and no message is dead-lettered for it
    assert calls_while_failing < 20, calls_while_failing
    assert "dead" not in statuses(stack.db, ids).values()
    # When the gateway recovers, a probe closes the breaker and everything is sent
    sandbox.reset()
    from worker.sweep import sweep

    def all_sent() -> bool:
        sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher)
        return set(statuses(stack.db, ids).values()) == {"sent"}

    wait_for(all_sent, timeout=60, every=1.0)
    log = stack.logs[0].read_text()
    assert "circuit breaker open" in log and "circuit breaker closed" in log
