"""Operators' actions on the account watch."""

from __future__ import annotations

from worker import clock
from worker.ledger.account import resume
from worker.ledger.db import Database
from worker.publish import Publishes
from worker.settings import Settings
from worker.sweep import publish_due
from worker.watch.alerts import clear_alert


def resume_sending(
    *, settings: Settings, db: Database, publisher: Publishes, by: str = "fibosms resume"
) -> tuple[bool, int]:
    """Resume a paused account and publish what waited; returns (was paused, published)."""
    now = clock.now()
    with db.transaction() as session:
        was_paused = resume(session, by=by, now=now)
        clear_alert(session, key="paused", now=now)
    if not was_paused:
        return False, 0
    # due by the database's clock, as the claim judges it, not this host's
    published, _failed = publish_due(settings=settings, db=db, publisher=publisher)
    return True, published
