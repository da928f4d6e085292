"""The call window: as many gateway calls in flight as the gateway's latency needs."""

from __future__ import annotations

import threading
import time

import pytest

from worker.callwindow import CPU_PER_CALL_SECONDS, FLOOR, CallWindow


def settle(window: CallWindow, latency: float) -> None:
    """The average after many calls of ``latency`` seconds."""
    window._latency = latency


def test_before_any_call_the_window_is_narrow_until_the_first_call_shows_the_pace() -> None:
    w = CallWindow(32)
    assert w.size() == FLOOR
    with w.call():
        time.sleep(0.1)
    assert w.size() == 32


def test_a_fast_gateway_gets_a_narrow_window_a_slow_one_a_wide_one() -> None:
    w = CallWindow(32)
    settle(w, 0.001)
    assert w.size() == FLOOR
    settle(w, 0.010)
    assert w.size() == round(0.010 / CPU_PER_CALL_SECONDS) + 1
    settle(w, 0.100)
    assert w.size() == 32  # capped by the limit
    assert CallWindow(1).size() == 1


def test_the_average_follows_the_calls_it_times() -> None:
    w = CallWindow(32)
    for _ in range(3):
        with w.call():
            time.sleep(0.03)
    assert w._latency is not None and 0.025 < w._latency < 0.2
    assert w.size() >= 11


def test_no_more_calls_than_the_window_run_at_once_and_none_is_lost() -> None:
    w = CallWindow(8)
    settle(w, 0.0001)  # a fast gateway: the floor
    lock = threading.Lock()
    running = peak = done = 0

    def one() -> None:
        nonlocal running, peak, done
        with w.call():
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.002)
            with lock:
                running -= 1
                done += 1

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert done == 40
    assert 1 <= peak <= 8
    assert w._in_flight == 0


def test_a_call_that_raises_gives_its_place_back() -> None:
    w = CallWindow(1)
    with pytest.raises(RuntimeError), w.call():
        raise RuntimeError("the call failed")
    assert w._in_flight == 0
    with w.call():  # would block for ever had the place been kept
        pass
