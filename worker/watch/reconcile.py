"""Reconcile a Vietnam-local day: our ledger's sent count against the gateway's totals.

The gateway's accepted count (success + failed + pending: "failed" there means delivery
failed after the gateway accepted it) is compared with the messages we recorded as sent
up to the moment of its totals poll, so traffic after the poll does not count as a
difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from worker.ledger.account import ReconciliationRecord, latest_totals, save_reconciliation
from worker.ledger.views import LocalCounts, day_counts
from worker.watch.alerts import clear_alert, raise_alert
from worker.watch.days import day_bounds


@dataclass(frozen=True)
class DayCheck:
    day: date
    local: LocalCounts
    #: messages we recorded as sent up to the gateway's poll
    sent_at_poll: int
    gateway_success: int
    gateway_failed: int
    gateway_pending: int
    polled_at: datetime
    difference: int
    mismatch: bool

    @property
    def gateway_accepted(self) -> int:
        return self.gateway_success + self.gateway_failed + self.gateway_pending


def local_counts(session: Session, day: date, *, until: datetime | None = None) -> LocalCounts:
    """Sent and dead-lettered during ``day`` (up to ``until``), and in flight now."""
    start, end = day_bounds(day)
    return day_counts(session, start, end, sent_until=until)


def check_day(session: Session, day: date, *, tolerance: int) -> DayCheck | None:
    """Compare ``day``; None when the gateway's totals for it were never polled."""
    totals = latest_totals(session, day)
    if totals is None:
        return None
    local = local_counts(session, day)
    at_poll = local_counts(session, day, until=totals.polled_at).sent
    accepted = totals.success + totals.failed + totals.pending
    difference = accepted - at_poll
    return DayCheck(
        day=day,
        local=local,
        sent_at_poll=at_poll,
        gateway_success=totals.success,
        gateway_failed=totals.failed,
        gateway_pending=totals.pending,
        polled_at=totals.polled_at,
        difference=difference,
        mismatch=abs(difference) > tolerance,
    )


def reconcile(session: Session, day: date, *, tolerance: int, now: datetime) -> DayCheck | None:
    """Check ``day``, store the result and raise or clear its mismatch alert."""
    check = check_day(session, day, tolerance=tolerance)
    if check is None:
        return None
    save_reconciliation(
        session,
        ReconciliationRecord(
            day=day,
            local_sent=check.sent_at_poll,
            local_dead=check.local.dead,
            local_in_flight=check.local.in_flight,
            gateway_success=check.gateway_success,
            gateway_failed=check.gateway_failed,
            gateway_pending=check.gateway_pending,
            difference=check.difference,
            mismatch=check.mismatch,
            checked_at=now,
        ),
    )
    key = f"mismatch:{day.isoformat()}"
    if check.mismatch:
        raise_alert(
            session,
            kind="mismatch",
            key=key,
            message=(
                f"{day.isoformat()} does not reconcile: the gateway accepted "
                f"{check.gateway_accepted} messages, our ledger sent {check.sent_at_poll} "
                f"(difference {check.difference:+d}, tolerance {tolerance})"
            ),
            now=now,
        )
    else:
        clear_alert(session, key=key, now=now)
    return check


def as_dict(check: DayCheck) -> dict[str, object]:
    out = asdict(check)
    out["day"] = check.day.isoformat()
    out["polled_at"] = check.polled_at.isoformat()
    return out
