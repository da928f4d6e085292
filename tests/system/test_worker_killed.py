"""A worker killed with SIGKILL mid-run: nothing is lost, and only what was in flight is resent.

1,000 messages, each with its own text, through a real worker (threads pool) on Redis and
PostgreSQL, with beat running the sweep every second. The worker is killed twice while
sending and started again each time. The sweep takes the rows the dead worker left in
``sending`` for ambiguous attempts once FIBOSMS_SENDING_TIMEOUT_SECONDS has passed, and
publishes again the tasks Redis holds unacknowledged for the dead worker (they would come
back only after the hour-long visibility timeout).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack, wait_for
from tests.system.infra import count_by_status, rows, wait_until_final
from worker.ledger.models import Message

pytestmark = pytest.mark.system

MESSAGES = 1000
CONCURRENCY = 8
KILLS = 2


def phone(i: int) -> str:
    return f"0912{i:06d}"


@pytest.mark.timeout(240)
def test_a_worker_killed_mid_run_loses_nothing_and_resends_only_what_was_in_flight(
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
        FIBOSMS_SENDING_TIMEOUT_SECONDS="3",
        FIBOSMS_READ_TIMEOUT_SECONDS="1",
        FIBOSMS_REPUBLISH_AFTER_SECONDS="6",
        FIBOSMS_SWEEP_SECONDS="1",
        FIBOSMS_RETRY_BASE_SECONDS="0.5",
        FIBOSMS_RETRY_MAX_SECONDS="1",
    )
    clean_ledger(stack.db)
    # each send takes a moment, so that every thread is mid-call when the kill comes
    sandbox.configure(delay=0.02)
    stack.start_worker(concurrency=CONCURRENCY)
    beat(stack)
    started = time.monotonic()
    ids = stack.producer.enqueue_many(
        [{"phone": phone(i), "text": f"kill test message {i:04d}"} for i in range(MESSAGES)],
        kind="transactional",
    )
    text_of = {mid: f"kill test message {i:04d}" for i, mid in enumerate(ids)}

    in_flight_at_kills: list[set[int]] = []
    for k in range(1, KILLS + 1):
        # Given a worker in the middle of the run
        wait_for(
            lambda k=k: count_by_status(stack.db).get("sent", 0) >= k * MESSAGES // (KILLS + 1),
            timeout=90,
        )
        # When it is killed outright (no warm shutdown, no acknowledgement, no cleanup)
        stack.stop_workers(signal.SIGKILL)
        in_flight = {
            r.id for r in rows(stack.db, Message.id, Message.status) if r.status == "sending"
        }
        in_flight_at_kills.append(in_flight)
        # and started again
        stack.start_worker(concurrency=CONCURRENCY)

    # Then every message ends sent
    wait_until_final(
        stack.db, {"sent": MESSAGES}, timeout=120,
        what=f"after {KILLS} kills of a worker, not every message was sent",
    )
    elapsed = time.monotonic() - started
    stack.stop_workers()

    # and the gateway accepted every one of them, at least once
    accepted = Counter(m.text for m in sandbox.accepted())
    missing = [mid for mid, t in text_of.items() if accepted[t] == 0]
    assert missing == [], f"messages marked sent that the gateway never accepted: {missing[:10]}"

    # and only sends that were in flight at a kill went out a second time
    duplicates = {mid: accepted[t] - 1 for mid, t in text_of.items() if accepted[t] > 1}
    in_flight_any = set().union(*in_flight_at_kills)
    by_id = {r.id: r for r in rows(stack.db, Message.id, Message.ambiguous_attempts)}
    assert set(duplicates) <= in_flight_any, (
        f"messages sent twice that no worker was sending when it was killed: "
        f"{sorted(set(duplicates) - in_flight_any)}"
    )
    in_flight_count = sum(len(s) for s in in_flight_at_kills)
    assert sum(duplicates.values()) <= in_flight_count, (
        f"{sum(duplicates.values())} duplicate sends, more than the {in_flight_count} sends in "
        f"flight at the kills"
    )
    # a message is claimed only from a task the worker holds unacknowledged, and a worker
    # holds at most its prefetch: that many claimed, unrecorded sends at most per kill (a busy
    # worker gathers single messages into shared runs, so this is more than its threads)
    prefetch = CONCURRENCY * stack.settings.prefetch_multiplier
    assert sum(duplicates.values()) <= KILLS * prefetch, (
        f"{sum(duplicates.values())} duplicate sends after {KILLS} kills of a worker holding "
        f"{prefetch} tasks: more than it could have had in flight"
    )
    unrecorded = [mid for mid in duplicates if by_id[mid].ambiguous_attempts < 1]
    assert unrecorded == [], f"sent twice without an ambiguous attempt on record: {unrecorded}"

    figures.update(
        messages=MESSAGES,
        kills=KILLS,
        in_flight_at_kills=[len(s) for s in in_flight_at_kills],
        distinct_messages_in_flight=len(in_flight_any),
        duplicates=sum(duplicates.values()),
        lost=len(missing),
        ambiguous_recorded=sum(1 for r in by_id.values() if r.ambiguous_attempts),
        seconds=round(elapsed, 1),
    )
