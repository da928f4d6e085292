"""Replay dead letters: back to ``queued`` with a fresh retry budget; history is kept."""

from __future__ import annotations

from collections.abc import Sequence

from worker.ledger.claims import mark_unpublished
from worker.ledger.clock import database_now
from worker.ledger.db import Database
from worker.ledger.deadletters import open_failures_with_code, requeue_dead
from worker.publish import Publishes


def replay(
    db: Database,
    publisher: Publishes,
    *,
    message_ids: Sequence[int] = (),
    code: int | None = None,
    by: str = "cli",
) -> list[int]:
    """Requeue dead messages (by id, or every open failure with ``code``); returns the ids."""
    with db.transaction() as session:
        # due now by the database's clock, which the claim judges by
        now = database_now(session)
        targets = set(message_ids)
        if code is not None:
            targets |= open_failures_with_code(session, code)
        if not targets:
            return []
        requeued = requeue_dead(session, targets, now=now, by=by)
    failed = publisher.publish(requeued)
    if failed:
        with db.transaction() as session:
            mark_unpublished(session, failed)
    return [mid for mid, _ in requeued]
