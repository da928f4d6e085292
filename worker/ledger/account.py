"""The account's state in the ledger: the pause, the balance and totals polls, reconciliations.

``fibo_account_state`` holds one row (id 1): whether sending is paused, why and since when.
After an account-wide code the message that met it is dead-lettered and every other message
waits in the ledger with its attempts untouched; after code 14 (balance) the first balance
poll that sees money resumes by itself, after the others an operator runs ``fibosms resume``.
The polls are history tables, one row per successful poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.codes import INSUFFICIENT_BALANCE
from worker.ledger.models import AccountState, BalancePoll, Reconciliation, TotalsPoll

ACCOUNT_ROW = 1


# -- the pause ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    paused: bool
    code: int | None = None
    reason: str | None = None
    since: datetime | None = None
    message_id: int | None = None

    @property
    def resumes_by_itself(self) -> bool:
        return self.paused and self.code == INSUFFICIENT_BALANCE

    def as_dict(self) -> dict[str, object]:
        return {
            "paused": self.paused,
            "code": self.code,
            "reason": self.reason,
            "since": self.since.isoformat() if self.since else None,
            "message_id": self.message_id,
            "resumes": (
                None if not self.paused
                else "on the first balance poll that sees money" if self.resumes_by_itself
                else "by `fibosms resume`"
            ),
        }


def current_pause(session: Session) -> Pause:
    """Whether sending is paused, and the code, reason and message that paused it."""
    row = session.get(AccountState, ACCOUNT_ROW)
    if row is None or not row.paused:
        return Pause(paused=False)
    return Pause(True, row.pause_code, row.pause_reason, row.paused_at, row.paused_by_message)


def pause(
    session: Session, *, code: int | None, reason: str, message_id: int, now: datetime
) -> bool:
    """Pause sending; True when this call paused it (False: it already was)."""
    result = session.execute(
        update(AccountState)
        .where(AccountState.id == ACCOUNT_ROW, AccountState.paused.is_(False))
        .values(
            paused=True,
            pause_code=code,
            pause_reason=reason,
            paused_at=now,
            paused_by_message=message_id,
            resumed_at=None,
            resumed_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def resume(session: Session, *, by: str, now: datetime, only_code: int | None = None) -> bool:
    """Resume sending; True when it was paused (and, with ``only_code``, for that code)."""
    query = update(AccountState).where(
        AccountState.id == ACCOUNT_ROW, AccountState.paused.is_(True)
    )
    if only_code is not None:
        query = query.where(AccountState.pause_code == only_code)
    result = session.execute(
        query.values(paused=False, resumed_at=now, resumed_by=by[:64]).execution_options(
            synchronize_session=False
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_paused(session: Session) -> bool:
    """True while sending is paused (one indexed read: the send path asks it)."""
    return bool(
        session.scalar(select(AccountState.paused).where(AccountState.id == ACCOUNT_ROW))
    )


# -- polls ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceReading:
    """One balance poll: the balance (messages or VND) and when it was read."""

    balance: Decimal
    polled_at: datetime


@dataclass(frozen=True)
class TotalsReading:
    """One GetTotalMt poll of a Vietnam-local day."""

    day: date
    success: int
    failed: int
    pending: int
    polled_at: datetime


@dataclass(frozen=True)
class LastPolls:
    """When the balance and the totals were last polled (None: never)."""

    balance: datetime | None
    totals: datetime | None


def record_balance(session: Session, balance: Decimal, now: datetime) -> None:
    """Store a balance poll."""
    session.add(BalancePoll(balance=balance, polled_at=now))


def latest_balance(session: Session) -> BalanceReading | None:
    """The last balance poll, or None before the first one."""
    row = session.execute(
        select(BalancePoll.balance, BalancePoll.polled_at)
        .order_by(BalancePoll.polled_at.desc(), BalancePoll.id.desc())
        .limit(1)
    ).first()
    return None if row is None else BalanceReading(row.balance, row.polled_at)


def balances_since(session: Session, since: datetime) -> list[BalanceReading]:
    """The balance polls from ``since`` on, oldest first."""
    rows = session.execute(
        select(BalancePoll.balance, BalancePoll.polled_at)
        .where(BalancePoll.polled_at >= since)
        .order_by(BalancePoll.polled_at)
    )
    return [BalanceReading(row.balance, row.polled_at) for row in rows]


def record_totals(
    session: Session, day: date, *, success: int, failed: int, pending: int, now: datetime
) -> None:
    """Store a totals poll of ``day`` (written at once: a reconciliation reads it next)."""
    session.add(
        TotalsPoll(day=day, success=success, failed=failed, pending=pending, polled_at=now)
    )
    session.flush()


def latest_totals(session: Session, day: date) -> TotalsReading | None:
    """The last totals poll of ``day``, or None when it was never polled."""
    row = session.execute(
        select(
            TotalsPoll.day,
            TotalsPoll.success,
            TotalsPoll.failed,
            TotalsPoll.pending,
            TotalsPoll.polled_at,
        )
        .where(TotalsPoll.day == day)
        .order_by(TotalsPoll.polled_at.desc(), TotalsPoll.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return TotalsReading(row.day, row.success, row.failed, row.pending, row.polled_at)


def last_polls(session: Session) -> LastPolls:
    """The times of the last balance and totals polls, whatever the day."""
    return LastPolls(
        balance=session.scalar(select(func.max(BalancePoll.polled_at))),
        totals=session.scalar(select(func.max(TotalsPoll.polled_at))),
    )


# -- reconciliations ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconciliationRecord:
    """One day's comparison of our ledger with the gateway's counters."""

    day: date
    local_sent: int
    local_dead: int
    local_in_flight: int
    gateway_success: int
    gateway_failed: int
    gateway_pending: int
    difference: int
    mismatch: bool
    checked_at: datetime


def save_reconciliation(session: Session, record: ReconciliationRecord) -> None:
    """Store the day's reconciliation, replacing an earlier one of the same day."""
    values = {
        "local_sent": record.local_sent,
        "local_dead": record.local_dead,
        "local_in_flight": record.local_in_flight,
        "gateway_success": record.gateway_success,
        "gateway_failed": record.gateway_failed,
        "gateway_pending": record.gateway_pending,
        "difference": record.difference,
        "mismatch": record.mismatch,
        "checked_at": record.checked_at,
    }
    row = session.get(Reconciliation, record.day)
    if row is None:
        session.add(Reconciliation(day=record.day, **values))
    else:
        for name, value in values.items():
            setattr(row, name, value)
