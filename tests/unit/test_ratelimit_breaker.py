"""The in-process rate limiter and circuit breaker (the embedded default's)."""

from __future__ import annotations

import time

import pytest

from worker.breaker import LocalBreaker
from worker.ratelimit import LocalRateLimiter


def test_a_full_bucket_gives_its_burst_then_the_rate() -> None:
    limiter = LocalRateLimiter(rate=200, capacity=10, reserve=0)
    started = time.monotonic()
    for _ in range(10):
        assert limiter.acquire(1, urgent=False, timeout=0)
    assert not limiter.acquire(1, urgent=False, timeout=0)  # the burst is spent
    for _ in range(20):  # 20 more at 200/s take about 0.1 s
        assert limiter.acquire(1, urgent=False, timeout=1)
    took = time.monotonic() - started
    assert 0.08 <= took <= 0.5, took


def test_non_urgent_messages_leave_the_reserve_for_urgent_ones() -> None:
    limiter = LocalRateLimiter(rate=1, capacity=10, reserve=0.3)
    taken = 0
    while limiter.acquire(1, urgent=False, timeout=0):
        taken += 1
    assert taken == 7  # 3 tokens kept back
    assert all(limiter.acquire(1, urgent=True, timeout=0) for _ in range(3))
    assert not limiter.acquire(1, urgent=True, timeout=0)


def test_a_cost_larger_than_the_bucket_is_refused_loudly() -> None:
    limiter = LocalRateLimiter(rate=10, capacity=5, reserve=0)
    with pytest.raises(ValueError, match="FIBOSMS_RATE_BURST"):
        limiter.acquire(6, urgent=True, timeout=1)


def test_the_breaker_opens_after_the_threshold_then_lets_one_probe_through() -> None:
    breaker = LocalBreaker(threshold=3, cooldown=0.2)
    for _ in range(2):
        breaker.failure()
    assert breaker.wait_seconds() == 0  # still closed
    breaker.failure()
    assert 0 < breaker.wait_seconds() <= 0.2  # open
    time.sleep(0.25)
    assert breaker.wait_seconds() == 0  # half-open: the probe
    assert breaker.wait_seconds() > 0  # others wait while the probe is out
    breaker.failure()  # the probe failed: open again
    assert breaker.wait_seconds() > 0.1
    time.sleep(0.25)
    assert breaker.wait_seconds() == 0
    breaker.success()  # the probe succeeded: closed
    assert breaker.wait_seconds() == 0 and breaker.wait_seconds() == 0


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = LocalBreaker(threshold=3, cooldown=10)
    for _ in range(5):
        breaker.failure()
        breaker.failure()
        breaker.success()
    assert breaker.wait_seconds() == 0
