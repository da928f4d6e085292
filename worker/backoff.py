"""Exponential backoff with jitter: pure arithmetic, no clock."""

from __future__ import annotations

import random


def backoff_bounds(attempt: int, *, base: float, maximum: float) -> tuple[float, float]:
    """The window (seconds) the retry after failed attempt number ``attempt`` (1-based) falls in.

    Attempt n waits between ``base`` and ``min(maximum, base * 2**n)``: the upper bound
    doubles with each failure, so a crowd of messages that failed together spreads out.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # cap the exponent: 2**1100 overflows a float long before anyone waits that long
    upper = min(maximum, base * 2.0 ** min(attempt, 64))
    return base, max(base, upper)


def compute_backoff(
    attempt: int, *, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next attempt, drawn uniformly from :func:`backoff_bounds`."""
    low, high = backoff_bounds(attempt, base=base, maximum=maximum)
    return (rng or _rng).uniform(low, high)


_rng = random.SystemRandom()
