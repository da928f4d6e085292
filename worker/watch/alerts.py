"""Alerts: one open alert per condition, logged when raised, delivered to a webhook.

A condition alerts once: raising an alert whose key is already open does nothing, and
clearing it lets the next occurrence alert again. The webhook is an outbox: alerts are
written in the database and delivered by a beat task, so a slow or broken webhook never
holds up a send.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from worker.ledger.db import Database
from worker.ledger.models import Alert
from worker.settings import Settings

log = logging.getLogger("fibosms.alerts")

#: seconds; connect and read timeouts of one webhook POST
WEBHOOK_TIMEOUT = (3.0, 5.0)
WEBHOOK_ATTEMPTS = 3


def raise_alert(session: Session, *, kind: str, key: str, message: str, now: datetime) -> bool:
    """Open an alert for ``key`` unless one is open; True when this call opened it."""
    open_already = session.scalar(
        select(Alert.id).where(Alert.key == key, Alert.cleared_at.is_(None)).limit(1)
    )
    if open_already is not None:
        return False
    session.add(Alert(kind=kind, key=key, message=message, raised_at=now))
    session.flush()
    log.warning("ALERT %s: %s", kind, message, extra={"alert": kind, "alert_key": key})
    return True


def clear_alert(session: Session, *, key: str, now: datetime) -> bool:
    """Close the open alert for ``key``; True when one was open."""
    result = session.execute(
        update(Alert)
        .where(Alert.key == key, Alert.cleared_at.is_(None))
        .values(cleared_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        log.info("alert %s cleared", key, extra={"alert_key": key})
        return True
    return False


def open_alerts(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Alert).where(Alert.cleared_at.is_(None)).order_by(Alert.raised_at)
    )
    return [
        {"kind": a.kind, "key": a.key, "message": a.message, "raised_at": a.raised_at.isoformat()}
        for a in rows
    ]


def deliver_alerts(settings: Settings, db: Database, now: datetime) -> int:
    """POST undelivered alerts to FIBOSMS_ALERT_WEBHOOK_URL; returns how many were taken."""
    if settings.alert_webhook_url is None:
        return 0
    with db.sessions() as session:
        pending = list(
            session.scalars(
                select(Alert).where(Alert.notified_at.is_(None)).order_by(Alert.id).limit(50)
            )
        )
    delivered = 0
    for alert in pending:
        payload = {
            "source": "fibosms",
            "kind": alert.kind,
            "key": alert.key,
            "message": alert.message,
            "raised_at": alert.raised_at.isoformat(),
            "open": alert.cleared_at is None,
        }
        try:
            _post(settings.alert_webhook_url, payload)
        except requests.RequestException as exc:
            # the webhook's URL may carry a token: name the failure, not the URL
            log.warning("alert webhook failed (%s); will try again", type(exc).__name__)
            break
        with db.transaction() as session:
            session.execute(
                update(Alert)
                .where(Alert.id == alert.id)
                .values(notified_at=now)
                .execution_options(synchronize_session=False)
            )
        delivered += 1
    return delivered


def _post(url: str, payload: dict[str, Any]) -> None:
    for attempt in Retrying(
        stop=stop_after_attempt(WEBHOOK_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception_type(requests.RequestException),
        reraise=True,
    ):
        with attempt:
            response = requests.post(url, json=payload, timeout=WEBHOOK_TIMEOUT)
            response.raise_for_status()
