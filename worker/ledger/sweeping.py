"""The sweep's statements: stalled attempts, and due rows the broker may not hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker.ledger.claims import Holder
from worker.ledger.models import SENDABLE, Message, Status


@dataclass(frozen=True)
class StalledAttempt:
    """A row left in ``sending`` past the sending timeout: its worker died or hangs."""

    holder: Holder
    kind: str
    budget_attempt: int
    prior_ambiguous: int


def stalled_attempts(
    session: Session, *, claimed_before: datetime, limit: int
) -> list[StalledAttempt]:
    """Rows in ``sending`` whose claim is older than ``claimed_before``, oldest first."""
    rows = session.execute(
        select(
            Message.id,
            Message.kind,
            Message.claims,
            Message.attempts,
            Message.attempts_at_replay,
            Message.ambiguous_attempts,
            Message.claimed_at,
        )
        .where(Message.status == Status.SENDING.value, Message.claimed_at < claimed_before)
        .order_by(Message.claimed_at)
        .limit(limit)
    ).all()
    return [
        StalledAttempt(
            holder=Holder(row.id, row.claims, row.attempts, row.claimed_at),
            kind=row.kind,
            budget_attempt=row.attempts - row.attempts_at_replay,
            prior_ambiguous=row.ambiguous_attempts,
        )
        for row in rows
    ]


def take_due(
    session: Session,
    *,
    now: datetime,
    published_before: datetime,
    limit: int,
    skip_locked: bool,
) -> list[tuple[int, str]]:
    """Mark up to ``limit`` due rows as published ``now``; their (id, queue).

    Due rows are sendable, due by ``now``, and either never published or published before
    ``published_before`` (the broker is taken to have lost them).
    """
    pick = (
        select(Message.id)
        .where(
            Message.status.in_(SENDABLE),
            Message.next_attempt_at <= now,
            or_(Message.published_at.is_(None), Message.published_at < published_before),
        )
        .order_by(Message.next_attempt_at)
        .limit(limit)
    )
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
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


def forget_publishes(session: Session) -> int:
    """Take every sendable row as never published (the broker lost its queues); how many."""
    result = session.execute(
        update(Message)
        .where(Message.status.in_(SENDABLE), Message.published_at.is_not(None))
        .values(published_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
