"""``fibosms report``: one Vietnam-local day as operators need to see it."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from worker.ledger.account import current_pause, latest_balance
from worker.watch.alerts import open_alerts
from worker.watch.reconcile import check_day, local_counts


def day_report(session: Session, day: date, *, tolerance: int) -> dict[str, Any]:
    """The day's local counts, the gateway's latest totals, the balance, pause and alerts."""
    local = local_counts(session, day)
    check = check_day(session, day, tolerance=tolerance)
    balance = latest_balance(session)
    gateway = None
    if check is not None:
        gateway = {
            "success": check.gateway_success,
            "failed": check.gateway_failed,
            "pending": check.gateway_pending,
            "polled_at": check.polled_at.isoformat(),
        }
    return {
        "date": day.isoformat(),
        "timezone": "Asia/Ho_Chi_Minh",
        "local": {
            "sent": local.sent,
            "dead": local.dead,
            "in_flight": local.in_flight,
            "sent_at_gateway_poll": check.sent_at_poll if check else None,
        },
        "gateway": gateway,
        "difference": check.difference if check else None,
        "tolerance": tolerance,
        "mismatch": bool(check and check.mismatch),
        "balance": json_number(balance.balance) if balance else None,
        "balance_polled_at": balance.polled_at.isoformat() if balance else None,
        "account": current_pause(session).as_dict(),
        "alerts": open_alerts(session),
    }


def json_number(value: Any) -> int | float:
    """A balance as a JSON number: whole amounts (messages, VND) as integers."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float
