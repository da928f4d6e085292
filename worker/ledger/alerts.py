"""``fibo_alerts``: the account watch's alerts, one open row per condition key.

The table is also the webhook's outbox: ``notified_at`` stays NULL until the alert was
delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.models import Alert

#: undelivered alerts taken per delivery run
DELIVERY_BATCH = 50


@dataclass(frozen=True)
class AlertRecord:
    id: int
    kind: str
    key: str
    message: str
    raised_at: datetime
    cleared_at: datetime | None


def _record(alert: Alert) -> AlertRecord:
    return AlertRecord(
        alert.id, alert.kind, alert.key, alert.message, alert.raised_at, alert.cleared_at
    )


def open_alert(session: Session, *, kind: str, key: str, message: str, now: datetime) -> bool:
    """Open an alert for ``key`` unless one is open; True when this call opened it.

    One statement: the partial unique index on open keys (``uq_fibo_alerts_open_key``) makes
    a second transaction raising the same key at the same moment wait for the first and
    then insert nothing, where a look followed by an insert let both in.
    """
    insert = dialect_insert(session)
    opened = session.scalar(
        insert(Alert)
        .values(kind=kind, key=key, message=message, raised_at=now)
        .on_conflict_do_nothing(index_elements=["key"], index_where=Alert.cleared_at.is_(None))
        .returning(Alert.id)
    )
    return opened is not None


def close_alert(session: Session, *, key: str, now: datetime) -> bool:
    """Close the open alert for ``key``; True when one was open."""
    result = session.execute(
        update(Alert)
        .where(Alert.key == key, Alert.cleared_at.is_(None))
        .values(cleared_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_open_alerts(session: Session) -> list[AlertRecord]:
    """The open alerts, oldest first."""
    rows = session.scalars(
        select(Alert).where(Alert.cleared_at.is_(None)).order_by(Alert.raised_at)
    )
    return [_record(a) for a in rows]


def undelivered_alerts(session: Session, limit: int = DELIVERY_BATCH) -> list[AlertRecord]:
    """Alerts the webhook has not taken yet, in the order they were raised."""
    rows = session.scalars(
        select(Alert).where(Alert.notified_at.is_(None)).order_by(Alert.id).limit(limit)
    )
    return [_record(a) for a in rows]


def mark_delivered(session: Session, alert_id: int, now: datetime) -> None:
    """The webhook took this alert."""
    session.execute(
        update(Alert)
        .where(Alert.id == alert_id)
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
