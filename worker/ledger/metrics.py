"""The reads behind the ledger's metrics, grouped as the gauges need them.

They stay cheap on a large ledger: the in-flight statuses (``ix_sms_messages_status_due``),
rows created or sent since a moment (``ix_sms_messages_created_at``,
``ix_sms_messages_sent_at``), and ``sms_failures`` (small: dead letters only). Nothing
scans every sent message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from worker.ledger.models import IN_FLIGHT, SENDABLE, Failure, Message, Status


@dataclass(frozen=True)
class BacklogGroup:
    """In-flight messages of one (status, queue, last code)."""

    status: str
    queue: str
    last_code: int | None
    count: int
    #: sendable and not published (the publish failed or is pending)
    unpublished: int
    #: in ``sending`` since before ``stalled_before``
    stalled: int
    #: the earliest due time among the sendable rows already due (None: none due)
    oldest_due: datetime | None


def backlog(session: Session, *, now: datetime, stalled_before: datetime) -> list[BacklogGroup]:
    """Every message not yet final, whatever its age, grouped by status, queue, last code."""
    due = Message.status.in_(SENDABLE) & (Message.next_attempt_at <= now)
    stalled = (Message.status == Status.SENDING.value) & (Message.claimed_at < stalled_before)
    unpublished = Message.status.in_(SENDABLE) & Message.published_at.is_(None)
    rows = session.execute(
        select(
            Message.status,
            Message.queue,
            Message.last_code,
            func.count(),
            func.sum(case((unpublished, 1), else_=0)),
            func.sum(case((stalled, 1), else_=0)),
            func.min(case((due, Message.next_attempt_at))),
        )
        .where(Message.status.in_(IN_FLIGHT))
        .group_by(Message.status, Message.queue, Message.last_code)
    ).all()
    return [
        BacklogGroup(status, queue, last_code, count, int(n_unpub or 0), int(n_stalled or 0),
                     oldest_due)
        for status, queue, last_code, count, n_unpub, n_stalled, oldest_due in rows
    ]


@dataclass(frozen=True)
class RecentGroup:
    """Messages created since a moment, of one (current status, queue, last code)."""

    status: str
    queue: str
    last_code: int | None
    count: int
    attempts: int
    ambiguous_attempts: int


def created_since(session: Session, since: datetime) -> list[RecentGroup]:
    """Messages created from ``since`` on, by where they are now, with their attempts."""
    rows = session.execute(
        select(
            Message.status,
            Message.queue,
            Message.last_code,
            func.count(),
            func.sum(Message.attempts),
            func.sum(Message.ambiguous_attempts),
        )
        .where(Message.created_at >= since)
        .group_by(Message.status, Message.queue, Message.last_code)
    ).all()
    return [
        RecentGroup(status, queue, last_code, count, int(n_attempts or 0), int(n_ambiguous or 0))
        for status, queue, last_code, count, n_attempts, n_ambiguous in rows
    ]


@dataclass(frozen=True)
class LatencyGroup:
    """Acceptance-to-sent times of one queue's messages sent since a moment."""

    queue: str
    count: int
    #: seconds, summed over the messages
    total_seconds: float
    #: how many took at most each bound (cumulative, in the bounds' order)
    at_most: tuple[int, ...]


def sent_latency(
    session: Session, since: datetime, bounds: Sequence[float]
) -> list[LatencyGroup]:
    """Per queue, the time from the ledger row to ``sent`` of the messages sent from
    ``since`` on, counted against each of ``bounds`` (seconds)."""
    seconds = _seconds_between(
        Message.created_at, Message.sent_at, session.get_bind().dialect.name
    )
    columns: list[Any] = [
        Message.queue,
        func.count(),
        func.coalesce(func.sum(seconds), 0.0),
    ]
    columns += [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
    rows = session.execute(
        select(*columns)
        .where(Message.sent_at >= since, Message.status == Status.SENT.value)
        .group_by(Message.queue)
    ).all()
    return [
        LatencyGroup(queue, count, float(total), tuple(int(c or 0) for c in cumulative))
        for queue, count, total, *cumulative in rows
    ]


@dataclass(frozen=True)
class DeadLetterGroup:
    """Dead letters of one FIBO code and class."""

    code: int | None
    cls: str
    #: every one written, replayed or not
    count: int
    #: not replayed yet
    open: int


def dead_letter_counts(session: Session) -> list[DeadLetterGroup]:
    """Every dead letter ever (failure rows are kept after a replay), by code and class."""
    rows = session.execute(
        select(
            Failure.code,
            Failure.cls,
            func.count(),
            func.sum(case((Failure.replayed_at.is_(None), 1), else_=0)),
        ).group_by(Failure.code, Failure.cls)
    ).all()
    return [
        DeadLetterGroup(code, cls, count, int(n_open or 0)) for code, cls, count, n_open in rows
    ]


def _seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)
