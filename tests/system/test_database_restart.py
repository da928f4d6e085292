"""PostgreSQL restarted mid-run: workers and producers reconnect, nothing accepted is lost.

The ledger runs on a PostgreSQL cluster of the test's own (initdb in a temporary directory,
its own port), so the machine's shared cluster is never restarted. Producers enqueue
steadily while a real worker sends and beat sweeps every second; the cluster is stopped
with ``pg_ctl -m fast`` (every session cut, as in an operator's restart or a fail-over),
kept down for a few seconds, and started again.

While the database is down an enqueue fails with an error (nothing was accepted, the caller
knows it); as soon as it is back, enqueues succeed again. A worker cut off in the middle
of recording an attempt leaves its row in ``sending``; the sweep recovers it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.stack import Stack
from tests.system.infra import PrivatePostgres, Producers, wait_until_final
from worker.ledger.migrate import upgrade
from worker.ledger.models import Message

pytestmark = pytest.mark.system

CONCURRENCY = 8
DOWN_SECONDS = 5.0


@pytest.mark.timeout(180)
def test_a_database_restart_mid_run_loses_nothing_and_everyone_reconnects(
    make_stack: Callable[..., Stack],
    private_pg: PrivatePostgres,
    redis_url: str,
    sandbox: Any,
    beat: Callable[[Stack], Path],
    figures: dict[str, Any],
) -> None:
    upgrade(private_pg.url)
    stack = make_stack(
        private_pg.url,
        redis_url,
        FIBOSMS_SENDING_TIMEOUT_SECONDS="3",
        FIBOSMS_READ_TIMEOUT_SECONDS="1",
        FIBOSMS_REPUBLISH_AFTER_SECONDS="4",
        FIBOSMS_SWEEP_SECONDS="1",
        FIBOSMS_RETRY_BASE_SECONDS="0.5",
        FIBOSMS_RETRY_MAX_SECONDS="1",
    )
    # each send takes a moment, so that attempts are in flight when the database goes
    sandbox.configure(delay=0.05)
    stack.start_worker(concurrency=CONCURRENCY)
    beat(stack)
    with Producers(stack, threads=2, every=0.05, prefix="0915") as producers:
        time.sleep(4)
        # Given producers and a worker busy, when PostgreSQL restarts (sessions cut)
        down_at = time.monotonic()
        private_pg.stop("fast")
        time.sleep(DOWN_SECONDS)
        private_pg.start()
        up_at = time.monotonic()
        time.sleep(6)
    results = producers.results

    # Then the producers were refused only while the database was down (plus a moment to
    # notice it), and accepted again once it was back
    late_errors = [r.error for r in results if r.error and r.at > up_at + 1.0]
    assert late_errors == [], (
        f"enqueue still failing after the database came back: {late_errors[:3]}"
    )
    early_errors = [r.error for r in results if r.error and r.at < down_at - 0.5]
    assert early_errors == [], f"enqueue failed before the restart: {early_errors[:3]}"
    accepted_after = [r for r in results if r.message_id is not None and r.at > up_at + 1.0]
    assert len(accepted_after) >= 20, "producers did not get going again after the restart"

    # and the worker rode it out (it was not restarted)
    dead = [p.returncode for p in stack.workers if p.poll() is not None]
    assert dead == [], f"the worker exited when the database restarted (exit codes {dead})"

    # and every row in the ledger — every message a caller got an id for, and any whose
    # commit went through while its caller saw the connection drop — is sent
    with stack.db.sessions() as session:
        ledger = {mid: text for mid, text in session.execute(select(Message.id, Message.text))}
    given = {r.message_id for r in results if r.message_id is not None}
    assert given <= set(ledger), (
        f"ids handed to callers missing from the ledger: {sorted(given - set(ledger))[:10]}"
    )
    recovery = wait_until_final(
        stack.db, {"sent": len(ledger)}, timeout=60,
        what="after a PostgreSQL restart, not every accepted message was sent",
    )
    stack.stop_workers()

    # each at least once at the gateway, and twice only after an attempt recorded ambiguous
    accepted = Counter(m.text for m in sandbox.accepted())
    lost = [mid for mid, text in ledger.items() if accepted[text] == 0]
    assert lost == [], f"after a PostgreSQL restart, marked sent but never accepted: {lost[:10]}"
    with stack.db.sessions() as session:
        ambiguous = dict(session.execute(select(Message.id, Message.ambiguous_attempts)).all())
    twice = {mid: accepted[text] for mid, text in ledger.items() if accepted[text] > 1}
    unrecorded = [mid for mid in twice if ambiguous[mid] < 1]
    assert unrecorded == [], f"sent twice without an ambiguous attempt on record: {unrecorded}"
    assert sum(n - 1 for n in twice.values()) <= CONCURRENCY, (
        f"more second sends than attempts that can be in flight: {twice}"
    )

    refused = [r for r in results if r.error]
    figures.update(
        messages=len(ledger),
        enqueue_refused_while_down=len(refused),
        committed_though_caller_saw_an_error=len(set(ledger) - given),
        database_down_seconds=round(up_at - down_at, 1),
        max_enqueue_latency_while_down_s=round(
            max((r.latency for r in results if down_at <= r.at < up_at), default=0.0), 3
        ),
        recovered_by_sweep=sum(1 for n in ambiguous.values() if n),
        duplicates=sum(n - 1 for n in twice.values()),
        lost=len(lost),
        seconds_to_finish_after_restart=round(recovery + 6, 1),
    )
