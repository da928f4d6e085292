"""Read-only views of the ledger for the command line and operators (masked numbers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from worker.ledger.attempts import AttemptRecord, attempts_of
from worker.ledger.views import (
    FailureRecord,
    MessageRecord,
    failures,
    failures_of,
    message_record,
)
from worker.rules.phone import mask_phone


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_status(
    session: Session, message_id: int, *, with_attempts: bool = False
) -> dict[str, Any] | None:
    """``fibosms status``: one message's state, its number masked and its text left out;
    ``with_attempts`` adds ``attempts_history``, every recorded outcome of a call, oldest
    first."""
    m = message_record(session, message_id)
    if m is None:
        return None
    out = message_dict(m)
    if with_attempts:
        out["attempts_history"] = [attempt_dict(a) for a in attempts_of(session, message_id)]
    return out


def attempt_dict(a: AttemptRecord) -> dict[str, Any]:
    """One row of the attempt history as the command line prints it."""
    return {
        "attempt": a.attempt,
        "claim": a.claim,
        "claimed_at": _iso(a.claimed_at),
        "recorded_at": _iso(a.recorded_at),
        "status": a.status,
        "code": a.code,
        "ambiguous": a.ambiguous,
        "guessed": a.guessed,
        "late": a.late,
        "error": a.error,
    }


def message_dict(m: MessageRecord) -> dict[str, Any]:
    """A message as ``fibosms status --json`` prints it (and the HTTP API answers)."""
    return {
        "id": m.id,
        "status": m.status,
        "kind": m.kind,
        "queue": m.queue,
        "recipient": mask_phone(m.recipient),
        "sender": m.sender,
        "service_type": m.service_type,
        "segments": m.segments,
        "attempts": m.attempts,
        "ambiguous_attempts": m.ambiguous_attempts,
        "last_code": m.last_code,
        "last_error": m.last_error,
        "idempotency_key": m.idempotency_key,
        "created_at": _iso(m.created_at),
        "next_attempt_at": _iso(m.next_attempt_at),
        "first_attempt_at": _iso(m.first_attempt_at),
        "sent_at": _iso(m.sent_at),
        "expires_at": _iso(m.expires_at),
        "campaign": m.campaign,
        "hold_reason": m.hold_reason,
    }


def failure_dict(f: FailureRecord) -> dict[str, Any]:
    """A dead letter as the command line prints it (the recipient masked, when present)."""
    out: dict[str, Any] = {
        "failure_id": f.id,
        "message_id": f.message_id,
        "code": f.code,
        "meaning": f.meaning,
        "class": f.cls,
        "attempts": f.attempts,
        "last_error": f.last_error,
        "failed_at": _iso(f.failed_at),
        "replayed_at": _iso(f.replayed_at),
        "replayed_by": f.replayed_by,
    }
    if f.recipient is not None:
        out["recipient"] = mask_phone(f.recipient)
    return out


def list_failures(
    session: Session,
    *,
    code: int | None = None,
    since: datetime | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Dead letters, newest first; by default only those not replayed yet."""
    rows = failures(
        session, code=code, since=since, include_replayed=include_replayed, limit=limit
    )
    return [failure_dict(f) for f in rows]


def failure_history(session: Session, message_id: int) -> list[dict[str, Any]]:
    """Every failure row of one message, oldest first: its replay history."""
    return [failure_dict(f) for f in failures_of(session, message_id)]
