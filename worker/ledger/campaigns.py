"""Campaigns: ``sms_campaigns`` and the questions asked of a campaign's messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.marketing import CANCELLED_ERROR
from worker.ledger.models import SENDABLE, Campaign, Message, Status

_CAMP: Table = Campaign.__table__  # type: ignore[assignment]
_M: Table = Message.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class CampaignRecord:
    name: str
    created_at: datetime
    cancelled_at: datetime | None
    #: messages by status
    counts: dict[str, int] = field(default_factory=dict)
    #: queued messages held back, by hold reason
    holds: dict[str, int] = field(default_factory=dict)
    segments: int = 0


def ensure_campaign(session: Session, name: str, now: datetime) -> CampaignRecord:
    """The campaign ``name``, created now if it is new."""
    insert = dialect_insert(session)
    conn = session.connection()
    conn.execute(
        insert(_CAMP)
        .values(name=name, created_at=now, cancelled_at=None)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    found = campaign(session, name, with_counts=False)
    assert found is not None
    return found


def campaign(session: Session, name: str, *, with_counts: bool = True) -> CampaignRecord | None:
    """The campaign ``name`` with its counts, or None when there is none."""
    row = session.connection().execute(select(_CAMP).where(_CAMP.c.name == name)).first()
    if row is None:
        return None
    if not with_counts:
        return CampaignRecord(row.name, row.created_at, row.cancelled_at)
    counts, holds, segments = _counts(session, name)
    return CampaignRecord(row.name, row.created_at, row.cancelled_at, counts, holds, segments)


def campaigns(session: Session) -> list[CampaignRecord]:
    """Every campaign, newest first, with its counts."""
    names = session.connection().execute(
        select(_CAMP.c.name).order_by(_CAMP.c.created_at.desc(), _CAMP.c.name)
    ).scalars()
    found = [campaign(session, n) for n in list(names)]
    return [c for c in found if c is not None]


def _counts(session: Session, name: str) -> tuple[dict[str, int], dict[str, int], int]:
    counts: dict[str, int] = {}
    holds: dict[str, int] = {}
    segments = 0
    rows = session.connection().execute(
        select(_M.c.status, _M.c.hold_reason, func.count(), func.sum(_M.c.segments))
        .where(_M.c.campaign == name)
        .group_by(_M.c.status, _M.c.hold_reason)
    )
    for status, reason, n, parts in rows:
        counts[status] = counts.get(status, 0) + int(n)
        if reason is not None and status in SENDABLE:
            holds[reason] = holds.get(reason, 0) + int(n)
        segments += int(parts or 0)
    return counts, holds, segments


def sent_since(session: Session, name: str, since: datetime) -> int:
    """Messages of the campaign sent after ``since`` (its recent send rate)."""
    return int(
        session.connection()
        .execute(
            select(func.count())
            .select_from(_M)
            .where(_M.c.campaign == name, _M.c.sent_at >= since)
        )
        .scalar_one()
    )


def cancel_campaign(session: Session, name: str, now: datetime) -> int | None:
    """Cancel ``name``: its messages not yet sent become ``cancelled``; how many did.

    A message in ``sending`` is left to its attempt; should that attempt end in a retry,
    the next claim finds the campaign cancelled and cancels it then. None: no such campaign.
    """
    conn = session.connection()
    found = conn.execute(
        update(_CAMP)
        .where(_CAMP.c.name == name)
        .values(cancelled_at=func.coalesce(_CAMP.c.cancelled_at, now))
    )
    if not found.rowcount:
        return None
    result = conn.execute(
        update(_M)
        .where(_M.c.campaign == name, _M.c.status.in_(SENDABLE))
        .values(
            status=Status.CANCELLED.value,
            hold_reason=None,
            last_error=CANCELLED_ERROR,
            published_at=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)
