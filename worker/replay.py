"""Replay dead letters: back to ``queued`` with a fresh attempt budget; history is kept."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update

from worker.ledger.claims import mark_unpublished
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message, Status
from worker.sending import Publishes


def replay(
    db: Database,
    publisher: Publishes,
    *,
    message_ids: Sequence[int] = (),
    code: int | None = None,
    by: str = "cli",
) -> list[int]:
    """Requeue dead messages (by id, or every open failure with ``code``); returns the ids."""
    now = datetime.now(UTC)
    with db.transaction() as session:
        targets = set(message_ids)
        if code is not None:
            targets |= set(
                session.scalars(
                    select(Failure.message_id).where(
                        Failure.code == code, Failure.replayed_at.is_(None)
                    )
                )
            )
        if not targets:
            return []
        requeued = [
            (mid, queue)
            for mid, queue in session.execute(
                update(Message)
                .where(Message.id.in_(sorted(targets)), Message.status == Status.DEAD.value)
                .values(
                    status=Status.QUEUED.value,
                    attempts=0,
                    ambiguous_attempts=0,
                    next_attempt_at=now,
                    published_at=now,
                    claimed_at=None,
                    last_error=None,
                    updated_at=now,
                )
                .returning(Message.id, Message.queue)
                .execution_options(synchronize_session=False)
            )
        ]
        ids = [mid for mid, _ in requeued]
        if ids:
            session.execute(
                update(Failure)
                .where(Failure.message_id.in_(ids), Failure.replayed_at.is_(None))
                .values(replayed_at=now, replayed_by=by[:64])
                .execution_options(synchronize_session=False)
            )
    failed = publisher.publish(sorted(requeued))
    if failed:
        with db.transaction() as session:
            mark_unpublished(session, failed)
    return sorted(ids)
