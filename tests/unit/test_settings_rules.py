"""The rules that span several settings: start-up refuses what would fail later."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.backoff import compute_backoff
from worker.ratelimit import LocalRateLimiter
from worker.settings import Settings, SettingsError
from worker.settings.rules import (
    largest_cost,
    problems,
    token_wait_seconds,
)


def test_the_defaults_break_no_rule() -> None:
    s = Settings.from_env({})
    assert problems(s) == []


# -- the rate limit (issue 16 item 4) --------------------------------------------------------


def test_a_rate_limit_of_one_per_second_with_the_default_burst_starts_and_sends() -> None:
    # the limit alone used to leave 0.8 tokens for a message costing 1: never sent
    s = Settings.from_env({"FIBOSMS_RATE_LIMIT": "1", "FIBOSMS_BULK_BATCH_SIZE": "10"})
    assert (s.rate_limit, s.rate_burst, s.urgent_reserve) == (1.0, 1.0, 0.2)
    limiter = LocalRateLimiter(1.0, s.rate_burst, s.urgent_reserve)
    # a non-urgent message gets its turn once the schedule has been free a fifth of a second
    assert limiter.acquire(1, urgent=False, timeout=0.5)


def test_per_segment_costs_larger_than_the_burst_start_and_wait_for_an_idle_schedule() -> None:
    env = {"FIBOSMS_RATE_LIMIT": "50", "FIBOSMS_RATE_BURST": "2",
           "FIBOSMS_RATE_PER_SEGMENT": "true"}
    s = Settings.from_env(env)
    limiter = LocalRateLimiter(50.0, s.rate_burst, s.urgent_reserve)
    # a six-part message needs the schedule idle for 4.4 intervals (88 ms): it waits, it fits
    assert limiter.acquire(6, urgent=False, timeout=1)


def test_a_batch_whose_tokens_outlast_the_token_wait_stops_start_up() -> None:
    # 50 messages at 1/s: 50 s of tokens, but a message waits 30 s for one and is then
    # given back — every batch would churn
    env = {"FIBOSMS_RATE_LIMIT": "1", "FIBOSMS_RATE_BURST": "2"}
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert "FIBOSMS_BULK_BATCH_SIZE (50)" in str(info.value)
    assert "FIBOSMS_RATE_LIMIT (1/s)" in str(info.value)
    assert Settings.from_env({**env, "FIBOSMS_BULK_BATCH_SIZE": "30"}).bulk_batch_size == 30


# -- the sending timeout against one attempt (issue 16 item 2) -------------------------------


def test_the_call_deadline_must_fit_under_the_sending_timeout() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FIBOSMS_CALL_DEADLINE_SECONDS": "110"})
    text = str(info.value)
    assert text.startswith("FIBOSMS_SENDING_TIMEOUT_SECONDS (120) is too short")
    assert "FIBOSMS_CALL_DEADLINE_SECONDS (110)" in text
    assert Settings.from_env({"FIBOSMS_CALL_DEADLINE_SECONDS": "108"}).call_deadline_seconds == 108


def test_the_token_wait_counts_when_there_is_a_rate_limit() -> None:
    env = {"FIBOSMS_SENDING_TIMEOUT_SECONDS": "60", "FIBOSMS_CALL_DEADLINE_SECONDS": "35"}
    assert Settings.from_env(env).call_deadline_seconds == 35
    # 30 s of token wait + 35 s of call + 6 s of margin > 60 s
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**env, "FIBOSMS_RATE_LIMIT": "50"})
    assert "FIBOSMS_RATE_LIMIT is set" in str(info.value)
    assert "FIBOSMS_CALL_DEADLINE_SECONDS (35)" in str(info.value)


@pytest.mark.parametrize(
    ("env", "deadline"),
    [
        ({}, 35.0),
        ({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "3", "FIBOSMS_READ_TIMEOUT_SECONDS": "1"}, 2.7),
        ({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "10", "FIBOSMS_READ_TIMEOUT_SECONDS": "1",
      "FIBOSMS_RATE_LIMIT": "50"}, 4.0),
        ({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "40"}, 35.0),
        ({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "35", "FIBOSMS_READ_TIMEOUT_SECONDS": "20"}, 31.5),
    ],
)
def test_an_unset_call_deadline_fits_under_a_short_sending_timeout(
    env: dict[str, str], deadline: float
) -> None:
    s = Settings.from_env(env)
    assert s.call_deadline_seconds == pytest.approx(deadline)
    assert problems(s) == []


def test_the_read_timeout_must_stay_below_the_sending_timeout() -> None:
    with pytest.raises(SettingsError, match="above FIBOSMS_READ_TIMEOUT_SECONDS"):
        Settings.from_env({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "30"})


# -- the property: whatever passes start-up works ------------------------------------------

SPECIAL = st.sampled_from(["inf", "-inf", "nan", "1e300", "-1", "0", "abc", ""])


def mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` nine times in ten: enough settings pass start-up for the property to bite."""
    return st.integers(0, 9).flatmap(lambda i: good if i else bad)


def number(low: float, high: float) -> st.SearchStrategy[str]:
    """Mostly plausible values, some past the bounds, some not numbers at all."""
    inside = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    small = st.floats(min_value=low, max_value=min(high, low + 100), allow_nan=False)
    wide = st.floats(min_value=-high, max_value=high * 10, allow_nan=False)
    return mostly(st.one_of(inside, small).map(repr), st.one_of(wide.map(repr), SPECIAL))


def integer(low: int, high: int) -> st.SearchStrategy[str]:
    return mostly(st.integers(low, high).map(str),
                  st.one_of(st.integers(-10, high * 10).map(str), SPECIAL))


VALUES: dict[str, st.SearchStrategy[str]] = {
    "FIBOSMS_MAX_ATTEMPTS": integer(1, 100),
    "FIBOSMS_RETRY_BASE_SECONDS": number(0, 86400),
    "FIBOSMS_RETRY_MAX_SECONDS": number(0, 604800),
    "FIBOSMS_SENDING_TIMEOUT_SECONDS": number(1, 86400),
    "FIBOSMS_CONNECT_TIMEOUT_SECONDS": number(0.001, 600),
    "FIBOSMS_READ_TIMEOUT_SECONDS": number(0.001, 600),
    "FIBOSMS_CALL_DEADLINE_SECONDS": number(1, 600),
    "FIBOSMS_RATE_LIMIT": number(0.001, 10_000),
    "FIBOSMS_RATE_BURST": number(1, 100_000),
    "FIBOSMS_URGENT_RESERVE": number(0, 0.99),
    "FIBOSMS_RATE_PER_SEGMENT": st.sampled_from(["true", "false"]),
    "FIBOSMS_MAX_SEGMENTS": integer(1, 10),
    "FIBOSMS_BULK_BATCH_SIZE": integer(1, 1000),
    "FIBOSMS_BATCH_CONCURRENCY": integer(1, 256),
}
ENVS = st.fixed_dictionaries({}, optional=VALUES)


RATE_KEYS = ("FIBOSMS_RATE_LIMIT", "FIBOSMS_RATE_BURST", "FIBOSMS_URGENT_RESERVE",
         "FIBOSMS_RATE_PER_SEGMENT", "FIBOSMS_MAX_SEGMENTS", "FIBOSMS_BULK_BATCH_SIZE")
#: the same, always rate-limited: the bucket's rules get exercised on every example
RATE_ENVS = st.fixed_dictionaries(
    {k: v for k, v in VALUES.items() if k in RATE_KEYS},
    optional={k: v for k, v in VALUES.items() if k not in RATE_KEYS},
)


def assert_works(env: dict[str, str], seed: int) -> bool:
    """The property for one environment; whether it passed start-up."""
    try:
        s = Settings.from_env(env)
    except SettingsError as exc:
        assert "\n" not in str(exc) and "FIBOSMS_" in str(exc)
        return False
    rng = random.Random(seed)
    for attempt in range(1, s.max_attempts + 1):
        delay = compute_backoff(
            attempt, base=s.retry_base_seconds, maximum=s.retry_max_seconds, rng=rng
        )
        assert math.isfinite(delay) and 0.0 <= delay <= s.retry_max_seconds
    if s.rate_limit is not None:
        schedule = LocalRateLimiter(s.rate_limit, s.rate_burst, s.urgent_reserve)
        for cost in range(1, largest_cost(s.max_segments, s.rate_per_segment) + 1):
            # an idle schedule admits any cost at once, urgent or not: nothing never fits
            idle_since = -(cost + s.rate_burst + 1) * schedule.interval
            assert schedule.wait(idle_since, 0.0, cost, urgent=False) == 0.0
            assert schedule.wait(idle_since, 0.0, cost, urgent=True) == 0.0
    # one attempt, its token wait included, fits the sending timeout
    wait = token_wait_seconds(s.sending_timeout_seconds, s.rate_limit is not None)
    assert wait + s.call_deadline_seconds < s.sending_timeout_seconds
    assert s.read_timeout_seconds < s.sending_timeout_seconds
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=ENVS, seed=st.integers(0, 2**32 - 1))
def test_settings_that_pass_start_up_give_finite_backoff_and_fitting_tokens(
    env: dict[str, str], seed: int
) -> None:
    assert_works(env, seed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=RATE_ENVS, seed=st.integers(0, 2**32 - 1))
def test_rate_limited_settings_that_pass_start_up_fit_the_bucket(
    env: dict[str, str], seed: int
) -> None:
    assert "FIBOSMS_RATE_LIMIT" in env
    assert_works(env, seed)
