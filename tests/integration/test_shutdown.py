"""A worker told to stop (SIGTERM) stops within the documented time, even mid-call.

A real prefork worker, Redis, PostgreSQL and the sandbox gateway scripted to answer far
later than the send task's time limit: the warm shutdown waits for the running task, which
the gateway call's total deadline ends; the task's time limits, derived from that deadline,
are the backstop for whatever the deadline cannot cut.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from fibosms.celeryapp.config import send_time_limits, shutdown_bound_seconds
from tests.fixtures.stack import Stack, statuses, wait_for
from worker.brokers import SEND_TASK

PHONE = "0912345678"
#: seconds the sandbox waits before it answers: far beyond every limit below
GATEWAY_DELAY = 40.0


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(
        pg_url,
        redis_url,
        # a call may take 2 s in all; the socket's own read timeout alone would wait 30 s
        FIBOSMS_CALL_DEADLINE_SECONDS="2",
        FIBOSMS_READ_TIMEOUT_SECONDS="30",
        FIBOSMS_SENDING_TIMEOUT_SECONDS="120",
    )
    clean_ledger(s.db)
    return s


def test_sigterm_during_a_slow_gateway_call_stops_the_worker_within_the_documented_time(
    stack: Stack, sandbox: Any
) -> None:
    # Given a prefork worker sending an OTP to a gateway that takes 40 s to answer
    sandbox.script(PHONE, [{"delay": GATEWAY_DELAY, "code": 200}])
    stack.start_worker(pool="prefork", concurrency=1)
    [worker] = stack.workers
    mid = stack.producer.enqueue_sms(PHONE, "Ma OTP 424242", kind="otp")
    wait_for(lambda: [c for c in sandbox.calls() if c.operation == "SendMaskedSMS"], timeout=30)

    # When the worker's main process is told to stop, as systemd, Docker and Kubernetes do
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    bound = shutdown_bound_seconds(stack.settings)
    try:
        worker.wait(timeout=bound + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker was still running {bound + 10:.0f} s after SIGTERM")
    elapsed = time.monotonic() - started

    # Then it exited within the documented bound (the longest send task's hard limit),
    # indeed within send_sms's own soft limit, long before the gateway or the socket
    # would have given up
    soft, hard = send_time_limits(stack.settings)[SEND_TASK]
    assert (soft, hard, bound) == (7.0, 12.0, 14.0)
    assert elapsed <= soft, f"{elapsed:.1f} s after SIGTERM"
    assert worker.returncode == 0
    log = stack.logs[0].read_text(errors="replace")
    assert "Warm shutdown" in log
    # the pool's child built its resources as it started, its own
    assert log.count("gateway client and publisher ready") == 1
    # the call's deadline (2 s) ended it as an unknown outcome; the time limits, the
    # backstop, never had to interrupt the task
    assert "outcome=AmbiguousError" in log, log
    assert log.count("billiard.exceptions.SoftTimeLimitExceeded") == 0, log
    assert "Logging error" not in log
    # and the interrupted attempt was recorded, with an outcome unknown: the OTP will be
    # tried again, not left in "sending" for the sweep
    assert statuses(stack.db, [mid]) == {mid: "retrying"}
