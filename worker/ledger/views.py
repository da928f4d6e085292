"""Read-only views of the ledger: a message's state, dead letters, a day's counts, health.

Nothing here writes. The records are plain values with the full recipient: masking it is
the caller's job, at the edge where it leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from worker.ledger.db import make_engine
from worker.ledger.models import IN_FLIGHT, Failure, Message

# -- one message ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageRecord:
    """One ``sms_messages`` row, without its text."""

    id: int
    status: str
    kind: str
    queue: str
    recipient: str
    sender: str | None
    service_type: int
    segments: int
    attempts: int
    ambiguous_attempts: int
    last_code: int | None
    last_error: str | None
    idempotency_key: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    first_attempt_at: datetime | None
    sent_at: datetime | None
    expires_at: datetime | None
    campaign: str | None = None
    hold_reason: str | None = None


def message_record(session: Session, message_id: int) -> MessageRecord | None:
    """The message ``message_id``, or None when the ledger has no such row."""
    m = session.get(Message, message_id)
    if m is None:
        return None
    return MessageRecord(
        id=m.id,
        status=m.status,
        kind=m.kind,
        queue=m.queue,
        recipient=m.recipient,
        sender=m.sender,
        service_type=m.service_type,
        segments=m.segments,
        attempts=m.attempts,
        ambiguous_attempts=m.ambiguous_attempts,
        last_code=m.last_code,
        last_error=m.last_error,
        idempotency_key=m.idempotency_key,
        created_at=m.created_at,
        next_attempt_at=m.next_attempt_at,
        first_attempt_at=m.first_attempt_at,
        sent_at=m.sent_at,
        expires_at=m.expires_at,
        campaign=m.campaign,
        hold_reason=m.hold_reason,
    )


# -- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureRecord:
    """One ``sms_failures`` row; ``recipient`` only when it was asked for."""

    id: int
    message_id: int
    code: int | None
    meaning: str
    cls: str
    attempts: int
    last_error: str | None
    failed_at: datetime
    replayed_at: datetime | None
    replayed_by: str | None
    recipient: str | None = None


def _failure(f: Failure, recipient: str | None = None) -> FailureRecord:
    return FailureRecord(
        id=f.id,
        message_id=f.message_id,
        code=f.code,
        meaning=f.meaning,
        cls=f.cls,
        attempts=f.attempts,
        last_error=f.last_error,
        failed_at=f.failed_at,
        replayed_at=f.replayed_at,
        replayed_by=f.replayed_by,
        recipient=recipient,
    )


def failures(
    session: Session,
    *,
    code: int | None = None,
    since: datetime | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[FailureRecord]:
    """Dead letters with their recipient, newest first; by default only those not replayed."""
    query = select(Failure, Message.recipient).join(Message, Message.id == Failure.message_id)
    if code is not None:
        query = query.where(Failure.code == code)
    if since is not None:
        query = query.where(Failure.failed_at >= since)
    if not include_replayed:
        query = query.where(Failure.replayed_at.is_(None))
    query = query.order_by(Failure.failed_at.desc(), Failure.id.desc()).limit(limit)
    return [_failure(f, recipient) for f, recipient in session.execute(query)]


def failures_of(session: Session, message_id: int) -> list[FailureRecord]:
    """Every failure row of one message, oldest first (without the recipient)."""
    rows = session.scalars(
        select(Failure).where(Failure.message_id == message_id).order_by(Failure.id)
    )
    return [_failure(f) for f in rows]


# -- a day's counts -------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalCounts:
    sent: int
    dead: int
    in_flight: int


def day_counts(
    session: Session, start: datetime, end: datetime, *, sent_until: datetime | None = None
) -> LocalCounts:
    """Sent and dead-lettered in [start, end) (sent only up to ``sent_until``), and the
    messages created before ``end`` that are in flight now."""
    sent_end = min(end, sent_until) if sent_until is not None else end
    sent = session.scalar(
        select(func.count()).select_from(Message).where(
            Message.sent_at >= start, Message.sent_at < sent_end
        )
    )
    dead = session.scalar(
        select(func.count()).select_from(Failure).where(
            Failure.failed_at >= start, Failure.failed_at < end
        )
    )
    in_flight = session.scalar(
        select(func.count()).select_from(Message).where(
            Message.status.in_(IN_FLIGHT), Message.created_at < end
        )
    )
    return LocalCounts(sent=int(sent or 0), dead=int(dead or 0), in_flight=int(in_flight or 0))


# -- health ---------------------------------------------------------------------------------


def database_revision(url: str, *, connect_timeout: int) -> str | None:
    """Connect with a fresh engine, ``SELECT 1``, and read the Alembic revision (None: no
    migration yet). Raises when the database cannot be reached."""
    from alembic.runtime.migration import MigrationContext

    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": connect_timeout},
                  "pool_size": 1, "max_overflow": 0}
    engine = make_engine(url, **kwargs)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
