import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.backoff import backoff_bounds, compute_backoff


def test_the_window_doubles_until_the_maximum() -> None:
    assert backoff_bounds(1, base=30, maximum=3600) == (30, 60)
    assert backoff_bounds(2, base=30, maximum=3600) == (30, 120)
    assert backoff_bounds(7, base=30, maximum=3600) == (30, 3600)
    assert backoff_bounds(500, base=30, maximum=3600) == (30, 3600)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0, max_value=1e4),
    extra=st.floats(min_value=0, max_value=1e5),
    seed=st.integers(),
)
def test_every_delay_lies_between_base_and_max(
    attempt: int, base: float, extra: float, seed: int
) -> None:
    maximum = base + extra
    delay = compute_backoff(attempt, base=base, maximum=maximum, rng=random.Random(seed))
    assert base <= delay <= maximum


def test_delays_are_jittered() -> None:
    rng = random.Random(1)
    delays = {round(compute_backoff(3, base=30, maximum=3600, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_bounds(0, base=1, maximum=2)
