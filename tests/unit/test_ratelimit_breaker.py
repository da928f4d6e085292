"""The in-process rate limiter and circuit breaker (the embedded default's)."""

from __future__ import annotations

import threading
import time

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


def test_a_cost_larger_than_the_burst_waits_for_an_idle_schedule_instead_of_failing() -> None:
    # Given the default burst of one token and the default reserve
    limiter = LocalRateLimiter(rate=100, capacity=1, reserve=0.2)
    # When a non-urgent message of six parts asks, then another of one part
    assert limiter.acquire(6, urgent=False, timeout=1)
    took_from = time.monotonic()
    assert limiter.acquire(1, urgent=False, timeout=1)
    # Then the second waited for the six intervals the first took (60 ms at 100/s)
    assert time.monotonic() - took_from >= 0.05


def test_without_urgent_callers_the_others_get_the_whole_rate() -> None:
    # Given the default burst of one token and reserve of 0.2, at 100/s
    limiter = LocalRateLimiter(rate=100, capacity=1, reserve=0.2)
    assert limiter.acquire(1, urgent=False, timeout=1)
    started = time.monotonic()
    # When only non-urgent calls ask, 50 of them
    for _ in range(50):
        assert limiter.acquire(1, urgent=False, timeout=1)
    # Then they come one interval apart (0.5 s), not 1.2 intervals (0.6 s)
    assert time.monotonic() - started < 0.56


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_with_the_default_burst_no_one_second_window_exceeds_the_limit() -> None:
    # Given a limit of 50/s, a burst of 1 and three threads asking as fast as they can,
    # one of them urgent
    limiter = LocalRateLimiter(rate=50, capacity=1, reserve=0.2)
    times: list[float] = []
    stop = time.monotonic() + 1.6

    def ask(urgent: bool) -> None:
        while time.monotonic() < stop:
            if limiter.acquire(1, urgent=urgent, timeout=0.1):
                times.append(time.monotonic())

    threads = [threading.Thread(target=ask, args=(u,)) for u in (True, False, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then no window of one second, wherever it starts, holds more than 50 calls
    assert len(times) >= 70
    assert _most_in_any_window(times, 1.0) <= 50


def test_a_waiting_otp_takes_the_next_slot_before_a_campaign() -> None:
    # Given a campaign that keeps the schedule busy at 20/s with a burst of 1
    limiter = LocalRateLimiter(rate=20, capacity=1, reserve=0.2)
    stop = time.monotonic() + 1.0
    campaign_calls = 0

    def campaign() -> None:
        nonlocal campaign_calls
        while time.monotonic() < stop:
            if limiter.acquire(1, urgent=False, timeout=0.5):
                campaign_calls += 1

    thread = threading.Thread(target=campaign)
    thread.start()
    time.sleep(0.3)
    # When an OTP asks
    asked = time.monotonic()
    assert limiter.acquire(1, urgent=True, timeout=1)
    waited = time.monotonic() - asked
    thread.join()
    # Then it waits at most about one interval (50 ms), and the campaign still ran
    assert waited <= 0.06, waited
    assert campaign_calls >= 10


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
