"""Conditional state changes on ``sms_messages``: the at-most-once guard.

Every change names the state it expects (status, and for ``sending`` the claim token), so
a redelivered task, a second sweep or a worker that lost its claim changes nothing. The
token is the row's ``claims`` counter: every claim raises it and nothing lowers it, so a
worker that is still inside an old claim can never record onto a newer one (see
``docs/architecture.md``, "States").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, exists, func, insert, or_, tuple_, update
from sqlalchemy.orm import Session

from worker.kinds import Kind
from worker.ledger.clock import database_now
from worker.ledger.marketing import LISTED, screen
from worker.ledger.models import (
    SENDABLE,
    AccountState,
    Attempt,
    Failure,
    Message,
    Status,
    UTCDateTime,
)
from worker.rules.marketing import DEFAULT_POLICY, MarketingPolicy
from worker.states import Transition

#: seconds by which a task may arrive before its row is due (by the database's clock) and
#: still claim it: a countdown is rounded, and a broker holds it by the consuming host's clock
DUE_SLACK_SECONDS = 2.0
#: ``sms_failures.replayed_by`` of a dead letter closed because the gateway's late, definite
#: answer replaced the sweep's guess
LATE_ANSWER = "late answer"


@dataclass(frozen=True)
class Holder:
    """Who records an outcome: the row, the claim token held, the attempt's number, and
    when the claim was taken (for the attempt's history row)."""

    message_id: int
    claim: int
    attempt: int
    claimed_at: datetime


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
    #: the claim's token: only the holder of this number may record the outcome
    claim: int
    #: this attempt's number over the row's whole life (1-based)
    attempt: int
    #: this attempt's number within the retry budget (counted from the last replay)
    budget_attempt: int
    prior_ambiguous: int
    #: when the row moved to ``sending`` under this claim
    claimed_at: datetime

    @property
    def holder(self) -> Holder:
        return Holder(self.id, self.claim, self.attempt, self.claimed_at)


# The hot path's statements, built once on the table (SQLAlchemy Core: no ORM bookkeeping,
# and a cached compilation), with bound parameters.
_M: Table = Message.__table__  # type: ignore[assignment]
_ACCOUNT: Table = AccountState.__table__  # type: ignore[assignment]
_FAILURES: Table = Failure.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = Attempt.__table__  # type: ignore[assignment]
_NOW = bindparam("now", type_=UTCDateTime())

_CLAIMABLE = (
    _M.c.id.in_(bindparam("ids", expanding=True)),
    _M.c.status.in_(SENDABLE),
    _M.c.next_attempt_at <= bindparam("due_by", type_=UTCDateTime()),
    or_(_M.c.expires_at.is_(None), _M.c.expires_at > _NOW),
    ~exists().where(_ACCOUNT.c.paused.is_(True)),
)


def _claim_statement(*where: Any) -> Any:
    return (
        update(_M)
        .where(*_CLAIMABLE, *where)
        .values(
            status=Status.SENDING.value,
            hold_reason=None,
            attempts=_M.c.attempts + 1,
            claims=_M.c.claims + 1,
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
            _M.c.claims,
            _M.c.attempts,
            _M.c.attempts_at_replay,
            _M.c.ambiguous_attempts,
            _M.c.claimed_at,
        )
    )


#: the plain claim: never a marketing message (those go through the advertising rules in
#: ``worker.ledger.marketing`` first), never a suppressed kind to a listed number
_CLAIM = _claim_statement(
    _M.c.kind != Kind.MARKETING.value,
    ~and_(_M.c.kind.in_(bindparam("suppress_kinds", expanding=True)), LISTED),
)
#: the claim of marketing ids the rules let through, in the same transaction as their check
_CLAIM_SCREENED = _claim_statement(_M.c.kind == Kind.MARKETING.value)

_HOLDER = and_(
    _M.c.id == bindparam("mid"),
    _M.c.status == Status.SENDING.value,
    _M.c.claims == bindparam("claim"),
)
#: a row whose claim ``claim`` stalled and was settled by the sweep's guess, not claimed
#: again since: the one state a late definite answer may still change
_GUESSED = and_(
    _M.c.id == bindparam("mid"),
    _M.c.status.in_((Status.RETRYING.value, Status.DEAD.value)),
    _M.c.claims == bindparam("claim"),
    _M.c.guessed_claim == bindparam("claim"),
)
_FINISH_COMMON = {
    "status": bindparam("new_status"),
    "last_code": bindparam("code"),
    "last_error": bindparam("error"),
    "updated_at": _NOW,
    "claimed_at": None,
    "ambiguous_attempts": _M.c.ambiguous_attempts + bindparam("ambiguous"),
    "guessed_claim": bindparam("guessed"),
}
_SENT_AT = func.coalesce(bindparam("sent", type_=UTCDateTime()), _M.c.sent_at)
_DUE = bindparam("due", type_=UTCDateTime())
_PUBLISHED = bindparam("published", type_=UTCDateTime())


def _finish_statements(where: Any) -> tuple[Any, Any]:
    """The two shapes of an outcome's UPDATE (final, or retry with its due time)."""
    final = update(_M).where(where).values(**_FINISH_COMMON, sent_at=_SENT_AT)
    retry = (
        update(_M)
        .where(where)
        .values(**_FINISH_COMMON, next_attempt_at=_DUE, published_at=_PUBLISHED)
    )
    return final, retry


_FINISH, _FINISH_RETRY = _finish_statements(_HOLDER)
_LATE, _LATE_RETRY = _finish_statements(_GUESSED)
#: failures a late answer supersedes: the dead letter the sweep's guess wrote
_CLOSE_GUESSED_FAILURES = (
    update(_FAILURES)
    .where(_FAILURES.c.message_id == bindparam("mid"), _FAILURES.c.replayed_at.is_(None))
    .values(replayed_at=_NOW, replayed_by=LATE_ANSWER)
)
#: the outcome's row in the attempt history
_RECORD_ATTEMPT = insert(_ATTEMPTS).values(
    message_id=bindparam("mid"),
    claim=bindparam("claim"),
    attempt=bindparam("attempt"),
    claimed_at=bindparam("claimed_at", type_=UTCDateTime()),
    recorded_at=_NOW,
    status=bindparam("new_status"),
    code=bindparam("code"),
    ambiguous=bindparam("was_ambiguous"),
    guessed=bindparam("was_guessed"),
    late=bindparam("late"),
    error=bindparam("error"),
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


def claim(
    session: Session,
    message_id: int,
    now: datetime | None = None,
    policy: MarketingPolicy = DEFAULT_POLICY,
) -> ClaimedMessage | None:
    """Move a due, sendable, unexpired row to ``sending``; None when it is not ours to send.

    Nothing is claimed while the account is paused. "Due" is by the database's clock; a
    ``now`` given stands in for that clock (a test simulating time; production gives none).
    """
    claimed = claim_many(session, [message_id], now, policy)
    return claimed[0] if claimed else None


def claim_many(
    session: Session,
    ids: list[int],
    now: datetime | None = None,
    policy: MarketingPolicy = DEFAULT_POLICY,
) -> list[ClaimedMessage]:
    """Claim every due, sendable, unexpired row among ``ids`` that the rules let go.

    Messages of ``policy.suppress_kinds`` to a suppressed number, marketing outside the
    window or over the cap, and messages of a cancelled campaign are settled instead (see
    ``worker.ledger.marketing``), in the same transaction. Due-ness, expiry, the marketing
    hours and the cap's 24 hours are judged by the database's clock, and ``claimed_at`` is
    stamped with it, unless ``now`` stands in for it.
    """
    if now is None:
        now = database_now(session)
    due_by = now + timedelta(seconds=DUE_SLACK_SECONDS)
    conn = session.connection()
    rows = list(
        conn.execute(
            _CLAIM,
            {
                "ids": ids,
                "due_by": due_by,
                "now": now,
                "suppress_kinds": sorted(policy.suppress_kinds),
            },
        )
    )
    taken = {row.id for row in rows}
    rest = [i for i in ids if i not in taken]
    if rest:
        screened = screen(conn, rest, now=now, due_by=due_by, policy=policy)
        if screened:
            rows.extend(
                conn.execute(_CLAIM_SCREENED, {"ids": screened, "due_by": due_by, "now": now})
            )
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
            claim=row.claims,
            attempt=row.attempts,
            budget_attempt=row.attempts - row.attempts_at_replay,
            prior_ambiguous=row.ambiguous_attempts,
            claimed_at=row.claimed_at,
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


def finish_attempt(session: Session, holder: Holder, t: Transition, now: datetime) -> bool:
    """Record an attempt's outcome; False when the claim was lost (the sweep took it over).

    The attempt's ``sms_attempts`` row, and a dead letter's ``sms_failures`` row, are
    written in the same transaction.
    """
    return _finish(session, holder, t, now, late=False)


#: several rows, each under its own claim, to ``sent`` with one answer code
_FINISH_SENT = (
    update(_M)
    .where(
        tuple_(_M.c.id, _M.c.claims).in_(bindparam("held", expanding=True)),
        _M.c.status == Status.SENDING.value,
    )
    .values(
        status=Status.SENT.value,
        last_code=bindparam("code"),
        last_error=None,
        updated_at=_NOW,
        claimed_at=None,
        sent_at=_NOW,
        guessed_claim=None,
    )
    .returning(_M.c.id)
)


def finish_sent(
    session: Session, holders: Sequence[Holder], code: int, now: datetime
) -> set[int]:
    """Record several accepted sends with the same answer ``code`` in two statements; the
    ids recorded. An id missing from the answer lost its claim (see :func:`finish_late`).

    The same as :func:`finish_attempt` with a ``sent`` transition for each holder.
    """
    if not holders:
        return set()
    conn = session.connection()
    held = [(h.message_id, h.claim) for h in holders]
    done = {row[0] for row in conn.execute(_FINISH_SENT, {"held": held, "code": code,
                                                           "now": now})}
    if done:
        conn.execute(
            _RECORD_ATTEMPT,
            [
                {
                    "mid": h.message_id,
                    "claim": h.claim,
                    "attempt": h.attempt,
                    "claimed_at": h.claimed_at,
                    "now": now,
                    "new_status": Status.SENT.value,
                    "code": code,
                    "was_ambiguous": False,
                    "was_guessed": False,
                    "late": False,
                    "error": None,
                }
                for h in holders
                if h.message_id in done
            ],
        )
    return done


def finish_late(session: Session, holder: Holder, t: Transition, now: datetime) -> bool:
    """Record a definite outcome that came after the sweep guessed this claim's outcome.

    It applies only while the row still rests on that guess (not claimed since); the
    guess's ambiguous attempt is taken back and its dead letter, if any, closed as
    superseded. False when the row has moved on.
    """
    assert not t.ambiguous and not t.guessed, "only a definite answer replaces a guess"
    return _finish(session, holder, t, now, late=True)


def _finish(session: Session, holder: Holder, t: Transition, now: datetime, *, late: bool) -> bool:
    params: dict[str, object] = {
        "mid": holder.message_id,
        "claim": holder.claim,
        "new_status": t.status.value,
        "code": t.code,
        "error": t.error,
        "now": now,
        # a late answer takes back the ambiguous attempt the guess recorded
        "ambiguous": -1 if late else (1 if t.ambiguous else 0),
        "guessed": holder.claim if t.guessed else None,
    }
    if t.status is Status.RETRYING:
        assert t.next_attempt_at is not None
        params.update(due=t.next_attempt_at, published=t.published_at)
        statement = _LATE_RETRY if late else _FINISH_RETRY
    else:
        params["sent"] = now if t.status is Status.SENT else None
        statement = _LATE if late else _FINISH
    conn = session.connection()
    if not conn.execute(statement, params).rowcount:
        return False
    conn.execute(
        _RECORD_ATTEMPT,
        {
            "mid": holder.message_id,
            "claim": holder.claim,
            "attempt": holder.attempt,
            "claimed_at": holder.claimed_at,
            "now": now,
            "new_status": t.status.value,
            "code": t.code,
            "was_ambiguous": t.ambiguous,
            "was_guessed": t.guessed,
            "late": late,
            "error": t.error,
        },
    )
    if late:
        conn.execute(_CLOSE_GUESSED_FAILURES, {"mid": holder.message_id, "now": now})
    if t.status is Status.DEAD:
        conn.execute(
            insert(_FAILURES),
            {
                "message_id": holder.message_id,
                "code": t.code,
                "meaning": t.meaning or (t.error or "dead"),
                "class": t.failure_class or "permanent",
                "attempts": holder.attempt,
                "last_error": t.error,
                "failed_at": now,
            },
        )
    return True


def unpublish_unclaimed(session: Session, ids: list[int], now: datetime) -> list[int]:
    """Sendable rows among ``ids`` whose task was consumed without a claim: published no
    more, so the sweep publishes them once due; the ids of those already due.

    A task comes before its row is due when the host that holds its countdown runs ahead
    of the one that set it; a due row goes unclaimed when the account was paused as the
    claim ran (a resume may commit between the claim and this statement). Left published,
    either would wait ``republish_after_seconds`` for the sweep.
    """
    if not ids:
        return []
    rows = session.execute(
        update(Message)
        .where(
            Message.id.in_(ids),
            Message.status.in_(SENDABLE),
            Message.published_at.is_not(None),
        )
        .values(published_at=None)
        .returning(Message.id, Message.next_attempt_at)
        .execution_options(synchronize_session=False)
    )
    due_by = now + timedelta(seconds=DUE_SLACK_SECONDS)
    return [row.id for row in rows if row.next_attempt_at <= due_by]


def publish_if_resumed(session: Session, ids: list[int], now: datetime) -> list[tuple[int, str]]:
    """Mark published ``now`` the due, unpublished, sendable rows among ``ids``, unless the
    account is paused; their (id, queue), to publish after the commit.

    For rows whose task found the account paused: a resume that committed while their claim
    ran may have published what waited just before they were marked unpublished.
    """
    if not ids:
        return []
    due_by = now + timedelta(seconds=DUE_SLACK_SECONDS)
    rows = session.execute(
        update(Message)
        .where(
            Message.id.in_(ids),
            Message.status.in_(SENDABLE),
            Message.published_at.is_(None),
            Message.hold_reason.is_(None),
            Message.next_attempt_at <= due_by,
            ~exists().where(AccountState.paused.is_(True)),
        )
        .values(published_at=now)
        .returning(Message.id, Message.queue)
        .execution_options(synchronize_session=False)
    )
    return [(row.id, row.queue) for row in rows]


def mark_unpublished(session: Session, ids: list[int]) -> None:
    """Rows whose publish failed: the sweep publishes them once they are due."""
    session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status.in_(SENDABLE))
        .values(published_at=None)
        .execution_options(synchronize_session=False)
    )


def give_back(session: Session, holder: Holder, now: datetime) -> bool:
    """Undo a claim that made no call, without counting the attempt.

    The token stays spent (``claims`` is not lowered): only ``attempts`` goes back.
    """
    result = session.execute(
        update(Message)
        .where(
            Message.id == holder.message_id,
            Message.status == Status.SENDING.value,
            Message.claims == holder.claim,
        )
        .values(
            status=Status.RETRYING.value if holder.attempt > 1 else Status.QUEUED.value,
            attempts=holder.attempt - 1,
            claimed_at=None,
            next_attempt_at=now,
            published_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
