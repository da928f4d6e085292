"""The sweep: the ledger's answer to a broker that loses tasks and workers that die.

One pass (1) recovers rows left in ``sending`` longer than the sending timeout — a worker
died mid-call, so the attempt's outcome is unknown — and (2) publishes rows that are due
but not in flight: never published (the publish after commit failed), or published long
ago and never claimed (the broker lost them). Safe to run from any number of places at
once: every change is conditional, and PostgreSQL rows are taken with SKIP LOCKED.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from worker.decide import decide
from worker.errors import AmbiguousError
from worker.ledger.claims import finish_attempt, mark_unpublished
from worker.ledger.db import Database
from worker.ledger.models import SENDABLE, Message, Status
from worker.sending import Publishes, utcnow
from worker.settings import Settings
from worker.watch.account import is_paused

log = logging.getLogger("fibosms.sweep")

#: seconds one sweep pass may spend publishing a backlog
PUBLISH_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class SweepReport:
    recovered: int
    published: int
    publish_failed: int

    def as_dict(self) -> dict[str, int]:
        return {
            "recovered": self.recovered,
            "published": self.published,
            "publish_failed": self.publish_failed,
        }


def sweep(
    *, settings: Settings, db: Database, publisher: Publishes, now: datetime | None = None
) -> SweepReport:
    """One pass of the sweep."""
    now = now or utcnow()
    recovered = recover_stale(settings=settings, db=db, now=now)
    with db.sessions() as session:
        paused = is_paused(session)
    published, failed = (
        (0, 0) if paused else publish_due(settings=settings, db=db, publisher=publisher, now=now)
    )
    if recovered or published or failed:
        log.info(
            "sweep: %d stale attempts recovered, %d due messages published, %d left for later",
            recovered,
            published,
            failed,
        )
    return SweepReport(recovered=recovered, published=published, publish_failed=failed)


def recover_stale(*, settings: Settings, db: Database, now: datetime) -> int:
    """Rows in ``sending`` past the timeout become ambiguous attempts, decided by policy."""
    cutoff = now - timedelta(seconds=settings.sending_timeout_seconds)
    with db.transaction() as session:
        rows = session.execute(
            select(Message.id, Message.kind, Message.attempts, Message.ambiguous_attempts)
            .where(Message.status == Status.SENDING.value, Message.claimed_at < cutoff)
            .limit(settings.sweep_batch)
        ).all()
    recovered = 0
    for row in rows:
        decision = decide(
            AmbiguousError("the worker stopped during the call; the outcome is unknown"),
            kind=row.kind,
            attempts=row.attempts,
            prior_ambiguous=row.ambiguous_attempts,
            settings=settings,
        )
        due = now + timedelta(seconds=decision.delay or 0.0)
        # published_at None: the publish step below, or a later pass, sends it
        transition = decision.transition(due=due, published_at=None)
        with db.transaction() as session:
            if finish_attempt(session, row.id, row.attempts, transition, now):
                recovered += 1
                log.warning(
                    "message %d: attempt %d stalled in sending; recorded as ambiguous, now %s",
                    row.id,
                    row.attempts,
                    decision.status.value,
                    extra={"message_id": row.id, "attempt": row.attempts},
                )
    return recovered


def publish_due(
    *,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    now: datetime,
    budget_seconds: float = PUBLISH_BUDGET_SECONDS,
) -> tuple[int, int]:
    """Publish due rows not in flight, a batch at a time; returns (published, failed).

    It goes on while whole batches come back and ``budget_seconds`` last, so a backlog
    after an outage drains in one pass instead of one batch per tick.
    """
    deadline = time.monotonic() + budget_seconds
    published = failed = 0
    while True:
        items = _take_due(settings=settings, db=db, now=now)
        not_published = publisher.publish(items)
        if not_published:
            with db.transaction() as session:
                mark_unpublished(session, not_published)
        published += len(items) - len(not_published)
        failed += len(not_published)
        if len(items) < settings.sweep_batch or not_published or time.monotonic() > deadline:
            return published, failed


def _take_due(*, settings: Settings, db: Database, now: datetime) -> list[tuple[int, str]]:
    """Mark one batch of due rows as published now, and return them."""
    stale_publish = now - timedelta(seconds=settings.republish_after_seconds)
    pick = (
        select(Message.id)
        .where(
            Message.status.in_(SENDABLE),
            Message.next_attempt_at <= now,
            or_(Message.published_at.is_(None), Message.published_at < stale_publish),
        )
        .order_by(Message.next_attempt_at)
        .limit(settings.sweep_batch)
    )
    if db.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    with db.transaction() as session:
        return [
            (row.id, row.queue)
            for row in session.execute(
                update(Message)
                .where(Message.id.in_(pick.scalar_subquery()))
                .values(published_at=now)
                .returning(Message.id, Message.queue)
                .execution_options(synchronize_session=False)
            )
        ]
