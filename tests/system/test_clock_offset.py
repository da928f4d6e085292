"""Hosts whose clocks disagree by 5 s, ahead or behind.

A network namespace cannot have a wall clock of its own (time namespaces offset only the
monotonic clocks), so a skewed host is a real process run under libfaketime: its wall clock
(``worker.clock.now``, Celery's countdowns) reads 5 s ahead or behind, its monotonic clock
is left true. Each test first checks that the offset really took.

What holds: every time the ledger compares or stores as "now" is the database's
(``worker.ledger.clock``), so a worker host ahead does not claim a scheduled message early, a
host behind does not claim late, two hosts never both claim a row, and the sweep of a host
ahead takes over no attempt within the sending timeout. What a host's clock still decides is
when the broker lets a countdown task out; a task let out early is left to the sweep.
"""

from __future__ import annotations

import ast
import glob
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.fixtures.services import clean_ledger, require
from tests.fixtures.stack import ROOT, Stack, wait_for
from worker.ledger.claims import DUE_SLACK_SECONDS, claim
from worker.ledger.clock import database_now
from worker.ledger.models import Message
from worker.sandbox import SandboxServer
from worker.sending import Result, process_message
from worker.sweep import sweep

pytestmark = pytest.mark.system

SKEW = timedelta(seconds=5)


#: a gathered run's line (fibosms/celeryapp/tasks.py): what its messages came to
GATHERED = re.compile(r"send_sms ran \d+ gathered messages: (\{.*\})")

def skewed(seconds: float) -> dict[str, str]:
    """The environment of a process whose wall clock is ``seconds`` off (libfaketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    require(bool(found), "libfaketime is not installed (Debian: faketime)")
    return {
        "LD_PRELOAD": found[0],
        "FAKETIME": f"{seconds:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def host_offset(env: dict[str, str]) -> float:
    """Seconds by which a process in ``env`` reads the clock ahead of this one."""
    out = subprocess.run(
        [sys.executable, "-c", "from worker.clock import now; print(now().timestamp())"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )
    return float(out.stdout) - datetime.now().timestamp()


@pytest.fixture
def clock_stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    return stack


def db_now(stack: Stack) -> datetime:
    with stack.db.sessions() as session:
        return database_now(session)


def row(stack: Stack, mid: int) -> Any:
    with stack.db.sessions() as session:
        return session.execute(
            select(Message.status, Message.attempts, Message.claims, Message.next_attempt_at,
                   Message.first_attempt_at, Message.published_at).where(Message.id == mid)
        ).one()


def try_claim(stack: Stack, mid: int) -> bool:
    """The claim as a worker makes it: no time of its own, the database's clock."""
    with stack.db.transaction() as session:
        return claim(session, mid) is not None


def task_results(log: Path, word: str) -> int:
    """Send tasks the worker logging to ``log`` finished with ``word``: those run alone
    (Celery's "succeeded in" line) and those run in a gathered run (its counts line)."""
    found = 0
    for line in log.read_text(errors="replace").splitlines():
        if " succeeded in " in line and line.rstrip().endswith(f"'{word}'"):
            found += 1
        gathered = GATHERED.search(line)
        if gathered:
            found += ast.literal_eval(gathered.group(1)).get(word, 0)
    return found


def test_a_worker_host_ahead_does_not_claim_a_scheduled_message_early(
    clock_stack: Stack, sandbox: SandboxServer, figures: dict[str, Any]
) -> None:
    stack = clock_stack
    ahead = skewed(SKEW.total_seconds())
    assert abs(host_offset(ahead) - SKEW.total_seconds()) < 1.0
    log = stack.start_worker("-Q", "default", "--loglevel", "DEBUG", env=ahead)
    due = db_now(stack) + timedelta(seconds=6)
    mid = stack.producer.enqueue_sms("0919000003", "scheduled", send_at=due)
    # its task, held for 6 s by the host ahead: let out 5 s early, 6 s before the true due
    # time by the worker's own clock plus 1 s — within the old 2 s of slack
    assert stack.publisher.publish([(mid, "default")], countdown=6.0) == []
    wait_for(lambda: task_results(log, Result.SKIPPED.value) >= 1, timeout=20)
    assert db_now(stack) < due - timedelta(seconds=DUE_SLACK_SECONDS)
    assert not try_claim(stack, mid)
    early = row(stack, mid)
    assert (early.status, early.attempts, early.claims) == ("queued", 0, 0)
    assert sandbox.accepted("0919000003") == []
    # once due by the database's clock, the sweep publishes it and the host ahead sends it
    wait_for(lambda: db_now(stack) >= due, timeout=15)
    assert sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher).published == 1
    wait_for(lambda: row(stack, mid).status == "sent", timeout=20)
    sent = row(stack, mid)
    assert sent.first_attempt_at >= due - timedelta(seconds=DUE_SLACK_SECONDS)
    assert (sent.attempts, sent.claims, len(sandbox.accepted("0919000003"))) == (1, 1, 1)
    figures.update(skew_s=5, claimed_before_due_s=max(
        0.0, (due - sent.first_attempt_at).total_seconds()))


def test_a_worker_host_behind_claims_on_time_and_two_hosts_never_both_claim(
    clock_stack: Stack, sandbox: SandboxServer, figures: dict[str, Any]
) -> None:
    stack = clock_stack
    behind, ahead = skewed(-SKEW.total_seconds()), skewed(SKEW.total_seconds())
    assert abs(host_offset(behind) + SKEW.total_seconds()) < 1.0
    stack.start_worker("-Q", "urgent", "--loglevel", "DEBUG", env=behind)
    # an OTP, due now by the database's clock: 5 s in the future by the host's own clock,
    # beyond the slack, yet the host behind claims it as soon as its task comes
    mid = stack.producer.enqueue_sms("0919000001", "now", kind="otp")
    wait_for(lambda: row(stack, mid).status == "sent", timeout=20)
    first = row(stack, mid)
    late = (first.first_attempt_at - first.next_attempt_at).total_seconds()
    assert late < DUE_SLACK_SECONDS
    # the same task again and again, to the host behind and to one ahead: no second claim
    stack.start_worker("-Q", "urgent", "--loglevel", "DEBUG", env=ahead)
    for _ in range(4):
        assert stack.publisher.publish([(mid, "urgent")]) == []
    with stack.db.transaction() as session:
        # and due again, as far as any clock can tell: still no second claim of a sent row
        session.execute(update(Message).where(Message.id == mid).values(
            next_attempt_at=database_now(session) - timedelta(minutes=1)))
    assert not try_claim(stack, mid)
    wait_for(lambda: sum(task_results(p, Result.SKIPPED.value) for p in stack.logs) >= 4,
             timeout=20)
    after = row(stack, mid)
    assert (after.status, after.attempts, after.claims) == ("sent", 1, 1)
    assert len(sandbox.accepted("0919000001")) == 1
    figures.update(skew_s=5, behind_claimed_late_by_s=round(max(late, 0.0), 3),
                   second_claims=after.claims - 1)


def test_the_sweep_of_a_host_ahead_does_not_take_over_a_running_attempt(
    clock_stack: Stack, figures: dict[str, Any]
) -> None:
    stack = clock_stack
    ahead = {**stack.env, **skewed(SKEW.total_seconds())}
    assert abs(host_offset(ahead) - SKEW.total_seconds()) < 1.0
    timeout = stack.settings.sending_timeout_seconds
    mid = stack.producer.enqueue_sms("0919000002", "now")
    assert try_claim(stack, mid)

    def claimed_ago(seconds: float) -> None:
        with stack.db.transaction() as session:
            session.execute(update(Message).where(Message.id == mid).values(
                claimed_at=database_now(session) - timedelta(seconds=seconds)))

    def sweep_on_host_ahead() -> str:
        out = subprocess.run(
            [sys.executable, "-m", "fibosms.cli", "sweep"], cwd=ROOT,
            env={**os.environ, **ahead}, capture_output=True, text=True, check=True, timeout=60,
        )
        return out.stdout

    # 2 s short of the sending timeout by the database's clock, 3 s past it by the host's own
    claimed_ago(timeout - 2)
    assert "recovered 0," in sweep_on_host_ahead()
    assert row(stack, mid).status == "sending"
    # past the sending timeout by the database's clock it does take it over
    claimed_ago(timeout + 1)
    assert "recovered 1," in sweep_on_host_ahead()
    assert row(stack, mid).status == "retrying"
    figures.update(skew_s=5, taken_over_early=0)


def test_a_task_let_out_early_is_left_to_the_sweep(clock_stack: Stack) -> None:
    """A retry's countdown held by a host ahead of the one that set it comes early."""
    stack = clock_stack
    mid = stack.producer.enqueue_sms("0919000004", "retry")
    with stack.db.transaction() as session:
        due = database_now(session) + timedelta(seconds=30)
        session.execute(update(Message).where(Message.id == mid).values(
            status="retrying", next_attempt_at=due, published_at=due))
    result = process_message(mid, settings=stack.settings, db=stack.db,
                             client=_NoCalls(), publisher=stack.publisher)
    assert result is Result.SKIPPED
    early = row(stack, mid)
    assert (early.status, early.attempts, early.published_at) == ("retrying", 0, None)
    # not due yet: the sweep leaves it; due by the database's clock, it publishes it
    assert sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher).published == 0
    later = sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher,
                  now=due + timedelta(seconds=1))
    assert later.published == 1


class _NoCalls:
    def send(self, *args: Any, **kwargs: Any) -> object:
        raise AssertionError("no call may be made for a message that is not due")
