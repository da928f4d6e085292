"""The gateway misbehaves for 30 seconds: nothing is dead-lettered while its budget lasts.

Three faults in a row, ten seconds each, against a real worker with beat sweeping:
the sandbox stopped (connections refused), then answering after the read timeout (the
outcome of each attempt unknown), then serving 502 pages from a proxy. The retry budget
(FIBOSMS_MAX_ATTEMPTS=40 with waits of at least a second) outlasts the outage, so every
message must come through once the gateway is back, none in the failure table. The circuit
breaker is off here, so that every message keeps trying and spends its budget.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack
from tests.system.infra import ErrorPageServer, count_by_status, wait_until_final
from worker.ledger.models import Failure, Message

pytestmark = pytest.mark.system

MESSAGES = 150
PHASE_SECONDS = 10.0
MAX_ATTEMPTS = 40


def failure_rows(stack: Stack) -> int:
    with stack.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Failure)) or 0)


@pytest.mark.timeout(180)
def test_a_gateway_refusing_then_slow_then_failing_for_30s_dead_letters_nothing(
    make_stack: Callable[..., Stack],
    pg_url: str,
    redis_url: str,
    sandbox: Any,
    beat: Callable[[Stack], Path],
    figures: dict[str, Any],
) -> None:
    stack = make_stack(
        pg_url,
        redis_url,
        FIBOSMS_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        FIBOSMS_RETRY_BASE_SECONDS="1",
        FIBOSMS_RETRY_MAX_SECONDS="3",
        FIBOSMS_CONNECT_TIMEOUT_SECONDS="1",
        FIBOSMS_READ_TIMEOUT_SECONDS="1",
        FIBOSMS_SENDING_TIMEOUT_SECONDS="5",
        FIBOSMS_SWEEP_SECONDS="1",
        FIBOSMS_REPUBLISH_AFTER_SECONDS="6",
        # the circuit breaker would hold most messages back during the outage; off, every
        # message keeps trying, and the retry budget is what is under test
        FIBOSMS_BREAKER_THRESHOLD="0",
    )
    clean_ledger(stack.db)
    stack.start_worker(concurrency=8)
    beat(stack)
    dead_seen: list[int] = []

    def watch_until(deadline: float) -> None:
        while time.monotonic() < deadline:
            dead_seen.append(count_by_status(stack.db).get("dead", 0))
            time.sleep(0.5)

    # Given the gateway refusing connections, and messages arriving
    port = sandbox.port
    sandbox.stop()
    start = time.monotonic()
    half = MESSAGES // 2
    stack.producer.enqueue_many(
        [{"phone": f"0916{i:06d}", "text": f"gateway fault otp {i:04d}"} for i in range(half)],
        kind="otp",
    )
    stack.producer.enqueue_many(
        [{"phone": f"0916{i:06d}", "text": f"gateway fault message {i:04d}"}
         for i in range(half, MESSAGES)],
        kind="transactional",
    )
    watch_until(start + PHASE_SECONDS)

    # then answering, but only after the client's read timeout (1 s)
    sandbox.configure(delay=2.5)
    sandbox.start()
    assert sandbox.port == port, "the sandbox came back on another port"
    watch_until(start + 2 * PHASE_SECONDS)

    # then a proxy in front of it answering every call at once with a 502 page
    sandbox.stop()
    with ErrorPageServer(port, 502) as proxy:
        watch_until(start + 3 * PHASE_SECONDS)
    sandbox.configure(delay=0)
    sandbox.start()
    back = time.monotonic()
    back_wall = datetime.now(UTC)

    # Then no message was dead-lettered at any time
    assert max(dead_seen) == 0, "a message was dead-lettered while its retry budget lasted"
    # and every one is sent once the gateway answers again
    recovery = wait_until_final(
        stack.db, {"sent": MESSAGES}, timeout=90,
        what="after 30 s of gateway faults, not every message was sent",
    )
    stack.stop_workers()
    assert failure_rows(stack) == 0, "the failure table has rows after a recoverable outage"

    with stack.db.sessions() as session:
        rows = session.execute(
            select(Message.id, Message.text, Message.attempts, Message.ambiguous_attempts,
                   Message.sent_at)
        ).all()
    # none was sent before the gateway was back, and most met the faults, many times
    early = [r.id for r in rows if r.sent_at < back_wall - timedelta(seconds=1)]
    assert early == [], f"sent while the gateway was failing: {early}"
    met_faults = sum(1 for r in rows if r.attempts >= 2)
    assert met_faults >= MESSAGES // 2, f"only {met_faults} messages met a fault: test too weak"
    assert max(r.attempts for r in rows) < MAX_ATTEMPTS
    # a second SMS only where an attempt's outcome was unknown (the slow phase)
    accepted = Counter(m.text for m in sandbox.accepted())
    assert all(accepted[r.text] >= 1 for r in rows)
    twice = [r for r in rows if accepted[r.text] > 1]
    unrecorded = [r.id for r in twice if r.ambiguous_attempts < 1]
    assert unrecorded == [], f"sent twice without an ambiguous attempt on record: {unrecorded}"

    outcomes = Counter(c.outcome for c in sandbox.calls() if c.operation == "SendMaskedSMS")
    figures.update(
        messages=MESSAGES,
        outage_seconds=round(back - start, 1),
        phases="refused 10 s, slow (2.5 s > 1 s read timeout) 10 s, HTTP 502 10 s",
        dead_lettered=0,
        messages_that_met_faults=met_faults,
        attempts_max=max(r.attempts for r in rows),
        attempts_mean=round(sum(r.attempts for r in rows) / len(rows), 1),
        ambiguous_messages=sum(1 for r in rows if r.ambiguous_attempts),
        duplicates_after_ambiguous=sum(accepted[r.text] - 1 for r in twice),
        sandbox_answers=dict(outcomes),
        proxy_502_pages=proxy.calls,
        seconds_to_finish_after_recovery=round(recovery, 1),
    )
