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
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from worker.ledger.alerts import (
    close_alert,
    list_open_alerts,
    mark_delivered,
    open_alert,
    undelivered_alerts,
)
from worker.ledger.db import Database
from worker.settings import Settings

log = logging.getLogger("fibosms.alerts")

#: seconds; connect and read timeouts of one webhook POST
WEBHOOK_TIMEOUT = (3.0, 5.0)
WEBHOOK_ATTEMPTS = 3


def raise_alert(session: Session, *, kind: str, key: str, message: str, now: datetime) -> bool:
    """Open an alert for ``key`` unless one is open; True when this call opened it."""
    if not open_alert(session, kind=kind, key=key, message=message, now=now):
        return False
    log.warning("ALERT %s: %s", kind, message, extra={"alert": kind, "alert_key": key})
    return True


def clear_alert(session: Session, *, key: str, now: datetime) -> bool:
    """Close the open alert for ``key``; True when one was open."""
    if close_alert(session, key=key, now=now):
        log.info("alert %s cleared", key, extra={"alert_key": key})
        return True
    return False


def open_alerts(session: Session) -> list[dict[str, Any]]:
    """The open alerts, oldest first, as the report and the command line show them."""
    return [
        {"kind": a.kind, "key": a.key, "message": a.message, "raised_at": a.raised_at.isoformat()}
        for a in list_open_alerts(session)
    ]


def deliver_alerts(settings: Settings, db: Database, now: datetime) -> int:
    """POST undelivered alerts to FIBOSMS_ALERT_WEBHOOK_URL; returns how many were taken."""
    if settings.alert_webhook_url is None:
        return 0
    with db.sessions() as session:
        pending = undelivered_alerts(session)
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
            mark_delivered(session, alert.id, now)
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
