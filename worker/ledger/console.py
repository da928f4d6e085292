"""The console's reads that no other part needs: every one a bounded, indexed query.

Hourly outcomes walk ``ix_sms_messages_sent_at`` and ``sms_failures.failed_at`` over one
day; the oldest waiting message of a queue is one row of
``ix_sms_messages_status_queue_due`` (migration 0005); dead letters by code and class use
``ix_sms_failures_code_failed_at``. Nothing here counts the whole ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from worker.ledger.alerts import AlertRecord
from worker.ledger.models import SENDABLE, Alert, Failure, Message, Reconciliation, TotalsPoll
from worker.ledger.views import FailureRecord


@dataclass(frozen=True)
class HourCount:
    """Messages sent and dead-lettered in the hour starting at ``hour`` (UTC)."""

    hour: datetime
    sent: int
    dead: int


def _hour_of(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%dT%H:00:00", column)
    return func.to_char(func.date_trunc("hour", func.timezone("UTC", column)),
                        'YYYY-MM-DD"T"HH24:00:00')


def hourly_outcomes(session: Session, since: datetime, until: datetime) -> list[HourCount]:
    """Per UTC hour from ``since`` (rounded down to the hour) to ``until``: sent, dead."""
    dialect = session.get_bind().dialect.name
    sent_hour = _hour_of(Message.sent_at, dialect)
    dead_hour = _hour_of(Failure.failed_at, dialect)
    counts: dict[str, list[int]] = {}
    for hour, n in session.execute(
        select(sent_hour, func.count())
        .where(Message.sent_at >= since, Message.sent_at < until)
        .group_by(sent_hour)
    ):
        counts.setdefault(str(hour), [0, 0])[0] = int(n)
    for hour, n in session.execute(
        select(dead_hour, func.count())
        .where(Failure.failed_at >= since, Failure.failed_at < until)
        .group_by(dead_hour)
    ):
        counts.setdefault(str(hour), [0, 0])[1] = int(n)
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out: list[HourCount] = []
    hour_start = start
    while hour_start < until:
        sent, dead = counts.get(hour_start.strftime("%Y-%m-%dT%H:00:00"), (0, 0))
        out.append(HourCount(hour_start, sent, dead))
        hour_start += timedelta(hours=1)
    return out


@dataclass(frozen=True)
class Waiting:
    """The message of one queue and status that has waited longest for its due time."""

    queue: str
    status: str
    message_id: int
    due_at: datetime
    created_at: datetime


def oldest_waiting(session: Session, queues: tuple[str, ...], now: datetime) -> list[Waiting]:
    """Per queue and sendable status, the due message with the earliest due time."""
    out: list[Waiting] = []
    for queue in queues:
        for status in SENDABLE:
            row = session.execute(
                select(Message.id, Message.next_attempt_at, Message.created_at)
                .where(Message.status == status, Message.queue == queue,
                       Message.next_attempt_at <= now)
                .order_by(Message.next_attempt_at)
                .limit(1)
            ).first()
            if row is not None:
                out.append(Waiting(queue, status, row[0], row[1], row[2]))
    return out


def reconciliations_since(session: Session, day: date) -> list[Reconciliation]:
    """The daily reconciliations from ``day`` on, oldest first (detached rows)."""
    rows = list(session.scalars(
        select(Reconciliation).where(Reconciliation.day >= day).order_by(Reconciliation.day)
    ))
    session.expunge_all()
    return rows


def totals_since(session: Session, since: datetime, limit: int = 200) -> list[TotalsPoll]:
    """GetTotalMt polls from ``since`` on, newest first (detached rows)."""
    rows = list(session.scalars(
        select(TotalsPoll).where(TotalsPoll.polled_at >= since)
        .order_by(TotalsPoll.polled_at.desc(), TotalsPoll.id.desc()).limit(limit)
    ))
    session.expunge_all()
    return rows


def recent_alerts(session: Session, limit: int = 50) -> list[AlertRecord]:
    """Alerts, open or cleared, newest first."""
    rows = session.scalars(select(Alert).order_by(Alert.raised_at.desc(), Alert.id.desc())
                           .limit(limit))
    return [AlertRecord(a.id, a.kind, a.key, a.message, a.raised_at, a.cleared_at) for a in rows]


def open_failures_page(
    session: Session,
    *,
    code: int | None = None,
    cls: str | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[FailureRecord]:
    """Dead letters not replayed yet, with their recipient, newest first; by code, class."""
    query = (select(Failure, Message.recipient)
             .join(Message, Message.id == Failure.message_id)
             .where(Failure.replayed_at.is_(None)))
    if code is not None:
        query = query.where(Failure.code == code)
    if cls is not None:
        query = query.where(Failure.cls == cls)
    if before is not None:
        at, failure_id = before
        query = query.where(
            or_(Failure.failed_at < at, and_(Failure.failed_at == at, Failure.id < failure_id))
        )
    query = query.order_by(Failure.failed_at.desc(), Failure.id.desc()).limit(limit)
    return [
        FailureRecord(
            id=f.id, message_id=f.message_id, code=f.code, meaning=f.meaning, cls=f.cls,
            attempts=f.attempts, last_error=f.last_error, failed_at=f.failed_at,
            replayed_at=f.replayed_at, replayed_by=f.replayed_by, recipient=recipient,
        )
        for f, recipient in session.execute(query)
    ]


def count_open_failures(session: Session, code: int) -> int:
    """How many dead letters of ``code`` are not replayed yet (what a replay by code takes)."""
    return int(session.scalar(
        select(func.count()).select_from(Failure)
        .where(Failure.code == code, Failure.replayed_at.is_(None))
    ) or 0)
