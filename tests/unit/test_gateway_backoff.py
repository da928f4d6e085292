"""The gateway client's pause between attempts at a call that never left (or a read call)."""

from __future__ import annotations

from tenacity import RetryCallState

from worker.gateway.client import Backoff


def test_the_pause_doubles_from_the_first_up_to_its_cap_plus_jitter() -> None:
    backoff = Backoff(0.25, 2.0, 0.25)
    for attempt, base in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (9, 2.0)]:
        pauses = [backoff.seconds(attempt) for _ in range(200)]
        assert all(base <= p <= base + 0.25 for p in pauses), (attempt, min(pauses), max(pauses))
        assert max(pauses) - min(pauses) > 0.05  # jittered, not fixed


def test_tenacity_and_the_bursts_read_the_same_pause() -> None:
    backoff = Backoff(0.1, 10.0, 0.0)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = 3
    assert backoff(state) == backoff.seconds(3) == 0.4
