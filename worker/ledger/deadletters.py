"""Dead letters: finding them and putting them back in the queue."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.ledger.models import Failure, Message, Status


def open_failures_with_code(session: Session, code: int) -> set[int]:
    """Ids of the messages with a dead letter of ``code`` that was not replayed."""
    return set(
        session.scalars(
            select(Failure.message_id).where(Failure.code == code, Failure.replayed_at.is_(None))
        )
    )


def requeue_dead(
    session: Session, message_ids: Iterable[int], *, now: datetime, by: str
) -> list[tuple[int, str]]:
    """Move the dead messages among ``message_ids`` back to ``queued``; their (id, queue).

    The retry budget starts afresh (``attempts_at_replay`` moves up to ``attempts``), but
    ``attempts``, ``ambiguous_attempts`` and the claim token keep counting: a worker still
    inside an old attempt cannot record onto the new one, and the row keeps the count of
    every call that went out. Their open dead letters are marked replayed by ``by``.
    """
    requeued = [
        (mid, queue)
        for mid, queue in session.execute(
            update(Message)
            .where(Message.id.in_(sorted(set(message_ids))), Message.status == Status.DEAD.value)
            .values(
                status=Status.QUEUED.value,
                attempts_at_replay=Message.attempts,
                guessed_claim=None,
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
    return sorted(requeued)
