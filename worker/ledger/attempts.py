"""The attempt history of one message (``sms_attempts``), read for operators.

The rows are written by ``worker.ledger.claims`` with each recorded outcome; this module
only reads them, through ``ix_sms_attempts_message_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.ledger.models import Attempt


@dataclass(frozen=True)
class AttemptRecord:
    """One recorded outcome of a call: its claim, its times, where it led the row."""

    claim: int
    attempt: int
    claimed_at: datetime
    recorded_at: datetime
    status: str
    code: int | None
    ambiguous: bool
    guessed: bool
    late: bool
    error: str | None


def attempts_of(session: Session, message_id: int) -> list[AttemptRecord]:
    """Every recorded outcome of one message, in the order they were recorded."""
    rows = session.scalars(
        select(Attempt).where(Attempt.message_id == message_id).order_by(Attempt.id)
    )
    return [
        AttemptRecord(
            claim=a.claim,
            attempt=a.attempt,
            claimed_at=a.claimed_at,
            recorded_at=a.recorded_at,
            status=a.status,
            code=a.code,
            ambiguous=a.ambiguous,
            guessed=a.guessed,
            late=a.late,
            error=a.error,
        )
        for a in rows
    ]
