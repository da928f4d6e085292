"""Conditional state changes on ``sms_messages``: the at-most-once guard.

Every change names the state it expects (status, and for ``sending`` the attempt number),
so a redelivered task, a second sweep or a worker that lost its claim changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, exists, func, insert, or_, update
from sqlalchemy.orm import Session

from worker.ledger.models import SENDABLE, AccountState, Failure, Message, Status, UTCDateTime

#: seconds by which a task may arrive before its row is due and still claim it (clock skew
#: between machines, countdown rounding)
DUE_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class ClaimedMessage:
    """What the send needs, read at the moment the row moved to ``sending``."""

    id: int
    recipient: str
    text: str
    sender: str | None
    service_type: int
    segments: int
    kind: str
    queue: str
    #: this attempt's number (1-based); also the claim's token
    attempt: int
    prior_ambiguous: int


# The hot path's statements, built once on the table (SQLAlchemy Core: no ORM bookkeeping,
# and a cached compilation), with bound parameters.
_M: Table = Message.__table__  # type: ignore[assignment]
_ACCOUNT: Table = AccountState.__table__  # type: ignore[assignment]
_FAILURES: Table = Failure.__table__  # type: ignore[assignment]
_NOW = bindparam("now", type_=UTCDateTime())

_CLAIM = (
    update(_M)
    .where(
        _M.c.id.in_(bindparam("ids", expanding=True)),
        _M.c.status.in_(SENDABLE),
        _M.c.next_attempt_at <= bindparam("due_by", type_=UTCDateTime()),
        or_(_M.c.expires_at.is_(None), _M.c.expires_at > _NOW),
        ~exists().where(_ACCOUNT.c.paused.is_(True)),
    )
    .values(
        status=Status.SENDING.value,
        attempts=_M.c.attempts + 1,
        claimed_at=_NOW,
        first_attempt_at=func.coalesce(_M.c.first_attempt_at, _NOW),
        updated_at=_NOW,
    )
    .returning(
        _M.c.id,
        _M.c.recipient,
        _M.c.text,
        _M.c.sender,
        _M.c.service_type,
        _M.c.segments,
        _M.c.kind,
        _M.c.queue,
        _M.c.attempts,
        _M.c.ambiguous_attempts,
    )
)

_HOLDER = and_(
    _M.c.id == bindparam("mid"),
    _M.c.status == Status.SENDING.value,
    _M.c.attempts == bindparam("attempt"),
)
_FINISH_COMMON = {
    "status": bindparam("new_status"),
    "last_code": bindparam("code"),
    "last_error": bindparam("error"),
    "updated_at": _NOW,
    "claimed_at": None,
    "ambiguous_attempts": _M.c.ambiguous_attempts + bindparam("ambiguous"),
}
_FINISH = (
    update(_M)
    .where(_HOLDER)
    .values(
        **_FINISH_COMMON,
        sent_at=func.coalesce(bindparam("sent", type_=UTCDateTime()), _M.c.sent_at),
    )
)
_FINISH_RETRY = (
    update(_M)
    .where(_HOLDER)
    .values(
        **_FINISH_COMMON,
        next_attempt_at=bindparam("due", type_=UTCDateTime()),
        published_at=bindparam("published", type_=UTCDateTime()),
    )
)


def expire_if_due(session: Session, message_id: int, now: datetime) -> bool:
    """Move a sendable message past its expiry to ``expired``; True when it did."""
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status.in_(SENDABLE),
            Message.expires_at.is_not(None),
            Message.expires_at <= now,
        )
        .values(status=Status.EXPIRED.value, updated_at=now, last_error="expired before sending")
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim(session: Session, message_id: int, now: datetime) -> ClaimedMessage | None:
    """Move a due, sendable, unexpired row to ``sending``; None when it is not ours to send.

    Nothing is claimed while the account is paused. One statement: the hot path.
    """
    claimed = claim_many(session, [message_id], now)
    return claimed[0] if claimed else None


def claim_many(session: Session, ids: list[int], now: datetime) -> list[ClaimedMessage]:
    """Claim every due, sendable, unexpired row among ``ids`` in one statement."""
    due_by = now + timedelta(seconds=DUE_SLACK_SECONDS)
    rows = session.connection().execute(_CLAIM, {"ids": ids, "due_by": due_by, "now": now})
    return [
        ClaimedMessage(
            id=row.id,
            recipient=row.recipient,
            text=row.text,
            sender=row.sender,
            service_type=row.service_type,
            segments=row.segments,
            kind=row.kind,
            queue=row.queue,
            attempt=row.attempts,
            prior_ambiguous=row.ambiguous_attempts,
        )
        for row in rows
    ]


def defer(session: Session, ids: list[int], until: datetime, now: datetime) -> None:
    """Leave sendable rows for later (breaker open): due at ``until``, for the sweep."""
    session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status.in_(SENDABLE))
        .values(next_attempt_at=until, published_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Transition:
    """The next state of a row that is in ``sending`` at attempt ``attempt``."""

    status: Status
    code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    published_at: datetime | None = None
    ambiguous: bool = False
    failure_class: str | None = None
    meaning: str | None = None


def finish_attempt(
    session: Session, message_id: int, attempt: int, t: Transition, now: datetime
) -> bool:
    """Record an attempt's outcome; False when the claim was lost (the sweep took it over).

    A dead letter's ``sms_failures`` row is written in the same transaction.
    """
    params: dict[str, object] = {
        "mid": message_id,
        "attempt": attempt,
        "new_status": t.status.value,
        "code": t.code,
        "error": t.error,
        "now": now,
        "ambiguous": 1 if t.ambiguous else 0,
    }
    if t.status is Status.RETRYING:
        assert t.next_attempt_at is not None
        params.update(due=t.next_attempt_at, published=t.published_at)
        statement = _FINISH_RETRY
    else:
        params["sent"] = now if t.status is Status.SENT else None
        statement = _FINISH
    conn = session.connection()
    if not conn.execute(statement, params).rowcount:
        return False
    if t.status is Status.DEAD:
        conn.execute(
            insert(_FAILURES),
            {
                "message_id": message_id,
                "code": t.code,
                "meaning": t.meaning or (t.error or "dead"),
                "class": t.failure_class or "permanent",
                "attempts": attempt,
                "last_error": t.error,
                "failed_at": now,
            },
        )
    return True


def mark_unpublished(session: Session, ids: list[int]) -> None:
    """Rows whose publish failed: the sweep publishes them once they are due."""
    session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status.in_(SENDABLE))
        .values(published_at=None)
        .execution_options(synchronize_session=False)
    )


def give_back(session: Session, message_id: int, attempt: int, now: datetime) -> bool:
    """Undo a claim without counting the attempt: the account was paused meanwhile."""
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == Status.SENDING.value,
            Message.attempts == attempt,
        )
        .values(
            status=Status.RETRYING.value if attempt > 1 else Status.QUEUED.value,
            attempts=attempt - 1,
            claimed_at=None,
            next_attempt_at=now,
            published_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
