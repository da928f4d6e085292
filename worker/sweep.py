"""The sweep: the ledger's answer to a broker that loses tasks and workers that die.

One pass (1) recovers rows left in ``sending`` longer than the sending timeout — a worker
died mid-call, so the attempt's outcome is unknown — (2) notices a broker that lost its
queues (:mod:`worker.brokerstate`) and forgets what it was given, and (3) publishes rows
that are due but not in flight: never published (the publish after commit failed, or the
broker lost it), or published long ago and never claimed. Safe to run from any number of
places at once: every change is conditional, and PostgreSQL rows are taken with SKIP
LOCKED. One bad row never stops a pass: it is logged and the pass goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.brokerstate import BrokerMarker, DurableBroker
from worker.decide import decide
from worker.errors import AmbiguousError
from worker.ledger.account import is_paused
from worker.ledger.claims import finish_attempt, mark_unpublished
from worker.ledger.clock import database_now
from worker.ledger.db import Database
from worker.ledger.sweeping import StalledAttempt, forget_publishes, stalled_attempts, take_due
from worker.publish import Publishes
from worker.settings import Settings

log = logging.getLogger("fibosms.sweep")

#: seconds one sweep pass may spend publishing a backlog
PUBLISH_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class SweepReport:
    recovered: int
    published: int
    publish_failed: int
    #: rows whose publish was forgotten because the broker lost its queues
    broker_lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "recovered": self.recovered,
            "published": self.published,
            "publish_failed": self.publish_failed,
            "broker_lost": self.broker_lost,
        }


def sweep(
    *,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    marker: BrokerMarker | None = None,
    now: datetime | None = None,
) -> SweepReport:
    """One pass of the sweep, judged by the database's clock (``now`` stands in for it)."""
    if now is None:
        with db.sessions() as session:
            now = database_now(session)
    marker = marker or DurableBroker()
    recovered = recover_stale(settings=settings, db=db, now=now)
    broker_lost = forget_lost_publishes(db=db, marker=marker)
    with db.sessions() as session:
        paused = is_paused(session)
    published, failed = (
        (0, 0) if paused else publish_due(settings=settings, db=db, publisher=publisher, now=now)
    )
    if recovered or published or failed or broker_lost:
        log.info(
            "sweep: %d stale attempts recovered, %d due messages published, %d left for "
            "later, %d publishes forgotten after a broker loss",
            recovered,
            published,
            failed,
            broker_lost,
        )
    return SweepReport(
        recovered=recovered, published=published, publish_failed=failed, broker_lost=broker_lost
    )


def forget_lost_publishes(*, db: Database, marker: BrokerMarker) -> int:
    """When the broker lost its queues, take every sendable row as unpublished."""
    if not marker.lost():
        return 0
    with db.transaction() as session:
        forgotten = forget_publishes(session)
    marker.mark()
    if forgotten:
        log.warning(
            "the broker lost its queues: %d messages are published again as they fall due",
            forgotten,
        )
    return forgotten


def recover_stale(*, settings: Settings, db: Database, now: datetime) -> int:
    """Rows in ``sending`` past the timeout become ambiguous attempts, decided by policy."""
    cutoff = now - timedelta(seconds=settings.sending_timeout_seconds)
    with db.transaction() as session:
        rows = stalled_attempts(session, claimed_before=cutoff, limit=settings.sweep_batch)
    recovered = 0
    for row in rows:
        try:
            recovered += _recover(row, settings=settings, db=db, now=now)
        except Exception:
            # one row must never stop the sweep: the others still need recovering
            log.exception(
                "message %d: recovering its stalled attempt failed; tried again next pass",
                row.holder.message_id,
                extra={"message_id": row.holder.message_id},
            )
    return recovered


def _recover(row: StalledAttempt, *, settings: Settings, db: Database, now: datetime) -> int:
    decision = decide(
        AmbiguousError("the worker stopped during the call; the outcome is unknown"),
        kind=row.kind,
        attempts=row.budget_attempt,
        prior_ambiguous=row.prior_ambiguous,
        settings=settings,
    )
    due = now + timedelta(seconds=decision.delay or 0.0)
    # published_at None: the publish step below, or a later pass, sends it
    transition = decision.transition(due=due, published_at=None, guessed=True)
    with db.transaction() as session:
        if not finish_attempt(session, row.holder, transition, now):
            return 0
    log.warning(
        "message %d: attempt %d stalled in sending; recorded as ambiguous, now %s",
        row.holder.message_id,
        row.holder.attempt,
        decision.status.value,
        extra={"message_id": row.holder.message_id, "attempt": row.holder.attempt},
    )
    return 1


def publish_due(
    *,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    now: datetime | None = None,
    budget_seconds: float = PUBLISH_BUDGET_SECONDS,
) -> tuple[int, int]:
    """Publish due rows not in flight, a batch at a time; returns (published, failed).

    It goes on while whole batches come back and ``budget_seconds`` last, so a backlog
    after an outage drains in one pass instead of one batch per tick. Due by the
    database's clock, unless ``now`` stands in for it.
    """
    if now is None:
        with db.sessions() as session:
            now = database_now(session)
    deadline = time.monotonic() + budget_seconds
    published_before = now - timedelta(seconds=settings.republish_after_seconds)
    published = failed = 0
    while True:
        with db.transaction() as session:
            items = take_due(
                session,
                now=now,
                published_before=published_before,
                limit=settings.sweep_batch,
                skip_locked=db.dialect == "postgresql",
            )
        not_published = publisher.publish(items)
        if not_published:
            with db.transaction() as session:
                mark_unpublished(session, not_published)
        published += len(items) - len(not_published)
        failed += len(not_published)
        if len(items) < settings.sweep_batch or not_published or time.monotonic() > deadline:
            return published, failed
