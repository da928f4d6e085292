"""The suppression list, ``sms_suppressions``: numbers that get no message of the suppressed
kinds (``FIBOSMS_SUPPRESS_KINDS``). Numbers are in national form, as in the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.models import Suppression

#: ``sms_suppressions.source`` values
GATEWAY = "gateway"
OPERATOR = "operator"
IMPORT = "import"
API = "api"

#: numbers per statement
_CHUNK = 1000
_SUP: Table = Suppression.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class SuppressionRecord:
    phone: str
    reason: str | None
    source: str
    created_at: datetime


def add_suppressions(
    session: Session, phones: Iterable[str], *, reason: str | None, source: str, now: datetime
) -> int:
    """List ``phones`` (national form); a number already listed keeps its first entry.

    Returns how many were new.
    """
    unique = sorted(set(phones))
    insert = dialect_insert(session)
    added = 0
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        statement = (
            insert(_SUP)
            .values(
                [{"phone": p, "reason": reason, "source": source, "created_at": now} for p in chunk]
            )
            .on_conflict_do_nothing(index_elements=["phone"])
            .returning(_SUP.c.phone)
        )
        added += len(session.connection().execute(statement).all())
    return added


def remove_suppressions(session: Session, phones: Iterable[str]) -> int:
    """Take ``phones`` off the list; how many were on it."""
    unique = sorted(set(phones))
    removed = 0
    for start in range(0, len(unique), _CHUNK):
        result = session.connection().execute(
            delete(_SUP).where(_SUP.c.phone.in_(unique[start : start + _CHUNK]))
        )
        removed += int(result.rowcount)
    return removed


def suppressed_among(session: Session, phones: Sequence[str]) -> set[str]:
    """The numbers of ``phones`` that are on the list."""
    found: set[str] = set()
    unique = sorted(set(phones))
    for start in range(0, len(unique), _CHUNK):
        found.update(
            session.connection()
            .execute(select(_SUP.c.phone).where(_SUP.c.phone.in_(unique[start : start + _CHUNK])))
            .scalars()
        )
    return found


def list_suppressions(
    session: Session, *, limit: int | None = None, after: str | None = None
) -> list[SuppressionRecord]:
    """The list in phone order, from after ``after``, at most ``limit`` entries."""
    query = select(_SUP).order_by(_SUP.c.phone)
    if after is not None:
        query = query.where(_SUP.c.phone > after)
    if limit is not None:
        query = query.limit(limit)
    return [
        SuppressionRecord(r.phone, r.reason, r.source, r.created_at)
        for r in session.connection().execute(query)
    ]


def suppression(session: Session, phone: str) -> SuppressionRecord | None:
    """The entry of one number (national form), or None when it is not listed."""
    r = session.connection().execute(select(_SUP).where(_SUP.c.phone == phone)).first()
    return None if r is None else SuppressionRecord(r.phone, r.reason, r.source, r.created_at)


def count_suppressions(session: Session) -> int:
    return int(session.connection().execute(select(func.count()).select_from(_SUP)).scalar_one())
