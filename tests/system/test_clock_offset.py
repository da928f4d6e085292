"""Hosts whose clocks disagree by 5 s, ahead or behind.

A network namespace cannot have a wall clock of its own (time namespaces offset only the
monotonic clocks), so a host's skew is simulated the way the code takes time: every ledger
statement and the sweep take ``now`` from their caller, and a skewed host passes its own.
The statements are the real ones, on PostgreSQL.

What holds: a host behind never sends early (only late, by its lag); two hosts never both
claim a row, whatever their clocks; the sweep of a host 5 s ahead does not take over an
attempt that may still be running, because the sending timeout keeps a margin for skew
(``FIBOSMS_SENDING_TIMEOUT_SECONDS`` × 10 %, 6 s at the default 60 s). What does not hold
yet: a worker host ahead claims a scheduled message as soon as its own clock (plus 2 s of
slack) says it is due, so 5 s ahead sends up to 7 s early; see the xfail below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack
from worker.clock import now
from worker.ledger.claims import DUE_SLACK_SECONDS, claim
from worker.settings.rules import margin_seconds
from worker.sweep import sweep

pytestmark = pytest.mark.system

SKEW = timedelta(seconds=5)


@pytest.fixture
def clock_stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    return stack


def scheduled(stack: Stack, phone: str, in_seconds: float) -> tuple[int, Any]:
    due = now() + timedelta(seconds=in_seconds)
    return stack.producer.enqueue_sms(phone, "scheduled", send_at=due), due


def try_claim(stack: Stack, mid: int, host_now: Any) -> bool:
    with stack.db.transaction() as session:
        return claim(session, mid, host_now) is not None


def test_a_worker_host_behind_never_claims_early_and_two_hosts_never_both_claim(
    clock_stack: Stack, figures: dict[str, Any]
) -> None:
    stack = clock_stack
    mid, due = scheduled(stack, "0919000001", 30)
    # a host 5 s behind, at the due time by the true clock: not yet due for it
    behind_at_due = due - SKEW
    assert not try_claim(stack, mid, behind_at_due)
    # it claims once its own clock, with the 2 s slack, reaches the due time: late by 3 s
    assert try_claim(stack, mid, due - timedelta(seconds=DUE_SLACK_SECONDS))
    # a host 5 s ahead arriving for the same row finds it taken
    assert not try_claim(stack, mid, due + SKEW)
    figures.update(skew_s=5, behind_claims_late_by_s=SKEW.total_seconds() - DUE_SLACK_SECONDS,
                   second_claims=0)


def test_the_sweep_of_a_host_ahead_does_not_take_over_a_running_attempt(
    clock_stack: Stack, figures: dict[str, Any]
) -> None:
    stack = clock_stack
    settings = dataclasses.replace(stack.settings, sending_timeout_seconds=60.0)
    mid = stack.producer.enqueue_sms("0919000002", "now")
    claimed_at = now()
    assert try_claim(stack, mid, claimed_at)
    # the longest an attempt may legitimately run: the sending timeout less its margin
    longest = timedelta(seconds=60.0 - margin_seconds(60.0))
    report = sweep(settings=settings, db=stack.db, publisher=stack.publisher,
                   now=claimed_at + longest + SKEW)
    assert report.recovered == 0
    # past the sending timeout by the sweep host's own clock it does take it over
    later = sweep(settings=settings, db=stack.db, publisher=stack.publisher,
                  now=claimed_at + timedelta(seconds=61) + SKEW)
    assert later.recovered == 1
    figures.update(skew_s=5, margin_s=margin_seconds(60.0), taken_over_early=0)


@pytest.mark.xfail(
    strict=True,
    reason="the claim compares next_attempt_at with the worker host's clock; a host ahead "
    "sends a scheduled message early by its skew plus the 2 s slack (holding the claim "
    "against PostgreSQL's clock closes it; the ledger tests that pass now= would need it too)",
)
def test_a_worker_host_ahead_does_not_claim_a_scheduled_message_early(
    clock_stack: Stack,
) -> None:
    stack = clock_stack
    mid, due = scheduled(stack, "0919000003", 30)
    # 6 s before the true due time, by a clock 5 s ahead
    ahead = due - timedelta(seconds=6) + SKEW
    assert not try_claim(stack, mid, ahead)
