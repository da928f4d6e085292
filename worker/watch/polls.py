"""The beat's polls: the balance and the day's totals, each stored, each followed by its checks.

A failed poll is logged and tried at the next tick; it never raises into Celery.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session

from worker.codes import INSUFFICIENT_BALANCE
from worker.errors import FiboError
from worker.gateway import Totals
from worker.ledger.account import balances_since, record_balance, record_totals, resume
from worker.ledger.db import Database
from worker.publish import Publishes
from worker.settings import Settings
from worker.sweep import publish_due
from worker.watch.alerts import clear_alert, raise_alert
from worker.watch.days import vietnam_day
from worker.watch.reconcile import DayCheck, reconcile

log = logging.getLogger("fibosms.watch")


class AccountReader(Protocol):
    def balance(self) -> Decimal: ...
    def totals(self) -> Totals: ...


def poll_balance(
    *,
    settings: Settings,
    db: Database,
    client: AccountReader,
    now: datetime,
    publisher: Publishes | None = None,
) -> tuple[Decimal, bool] | None:
    """Store the balance, check it against FIBOSMS_LOW_BALANCE, resume after a top-up.

    Returns (balance, resumed), or None when the gateway could not be asked.
    """
    try:
        balance = client.balance()
    except FiboError as exc:
        log.warning("balance poll failed: %s", exc)
        return None
    with db.transaction() as session:
        record_balance(session, balance, now)
        resumed = balance > 0 and resume(
            session, by="balance poll", now=now, only_code=INSUFFICIENT_BALANCE
        )
        if resumed:
            clear_alert(session, key="paused", now=now)
            log.warning("balance is %s again: sending resumed", balance)
        _check_low_balance(session, settings, balance, now)
    if resumed and publisher is not None:
        # due by the database's clock, as the claim judges it, not this host's
        publish_due(settings=settings, db=db, publisher=publisher)
    return balance, resumed


def _check_low_balance(
    session: Session, settings: Settings, balance: Decimal, now: datetime
) -> None:
    if settings.low_balance is None:
        return
    threshold = Decimal(str(settings.low_balance))
    if balance >= threshold:
        clear_alert(session, key="low_balance", now=now)
        return
    message = f"balance {balance} is below {threshold}"
    rate = spend_per_hour(session, now)
    if rate is not None and rate > 0:
        message += (
            f"; at the last 24 hours' rate ({rate:.1f}/hour) it lasts about "
            f"{float(balance / rate):.1f} hours"
        )
    raise_alert(session, kind="low_balance", key="low_balance", message=message, now=now)


def spend_per_hour(session: Session, now: datetime) -> Decimal | None:
    """How fast the balance fell over the last 24 hours of polls (units per hour)."""
    since = now - timedelta(hours=24)
    rows = balances_since(session, since)
    if len(rows) < 2:
        return None
    # sum only the falls, so a top-up inside the window does not hide the spending
    spent = sum(
        (max(Decimal(0), a.balance - b.balance) for a, b in itertools.pairwise(rows)),
        Decimal(0),
    )
    hours = Decimal((rows[-1].polled_at - rows[0].polled_at).total_seconds()) / 3600
    if hours <= 0:
        return None
    return spent / hours


def poll_totals(
    *, settings: Settings, db: Database, client: AccountReader, now: datetime
) -> DayCheck | None:
    """Store today's GetTotalMt counters (Vietnam day) and reconcile the day."""
    day = vietnam_day(now)
    try:
        totals = client.totals()
    except FiboError as exc:
        log.warning("totals poll failed: %s", exc)
        return None
    with db.transaction() as session:
        record_totals(
            session,
            day,
            success=totals.success,
            failed=totals.failed,
            pending=totals.pending,
            now=now,
        )
        return reconcile(session, day, tolerance=settings.reconcile_tolerance, now=now)


def reconcile_closed_day(*, settings: Settings, db: Database, now: datetime) -> DayCheck | None:
    """After midnight (Vietnam): reconcile the day that just closed, from its last poll."""
    day = vietnam_day(now) - timedelta(days=1)
    with db.transaction() as session:
        return reconcile(session, day, tolerance=settings.reconcile_tolerance, now=now)
