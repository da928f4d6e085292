"""Keyset-paginated listings of messages and dead letters, newest first.

A page ends where the next one starts: the caller passes the last item's key back
(``before_id`` for messages, ``before`` = (failed_at, id) for failures), so a page costs
an index walk of its own length however deep it is, and rows arriving meanwhile never
shift a page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Index, and_, or_, select
from sqlalchemy.orm import Session

from worker.ledger.models import Failure, Message
from worker.ledger.views import FailureRecord, MessageRecord

#: one number's messages, newest first (migration 0004)
RECIPIENT_INDEX = Index("ix_sms_messages_recipient_id", Message.recipient, Message.id)

_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(MessageRecord))


def _message(m: Message) -> MessageRecord:
    return MessageRecord(**{name: getattr(m, name) for name in _MESSAGE_FIELDS})


def record_of(row: Mapping[str, Any]) -> MessageRecord:
    """A :class:`MessageRecord` from an ``sms_messages`` row as inserted (column → value,
    with its ``id``); the columns an insert leaves unset are None."""
    values: dict[str, Any] = {name: row.get(name) for name in _MESSAGE_FIELDS}
    return MessageRecord(**values)


def list_messages(
    session: Session,
    *,
    recipient: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    campaign: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[MessageRecord]:
    """Messages matching every filter given, newest (highest id) first.

    ``recipient`` is the stored national form; ``since``/``until`` bound ``created_at``
    (from ``since``, before ``until``); ``before_id`` continues after the previous page.
    """
    query = select(Message)
    if recipient is not None:
        query = query.where(Message.recipient == recipient)
    if status is not None:
        query = query.where(Message.status == status)
    if kind is not None:
        query = query.where(Message.kind == kind)
    if campaign is not None:
        query = query.where(Message.campaign == campaign)
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at < until)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    query = query.order_by(Message.id.desc()).limit(limit)
    return [_message(m) for m in session.scalars(query)]


def list_failures(
    session: Session,
    *,
    code: int | None = None,
    since: datetime | None = None,
    include_replayed: bool = False,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[FailureRecord]:
    """Dead letters with their recipient, newest first; by default only those not replayed.

    ``before`` is the (failed_at, id) of the previous page's last row.
    """
    query = select(Failure, Message.recipient).join(Message, Message.id == Failure.message_id)
    if code is not None:
        query = query.where(Failure.code == code)
    if since is not None:
        query = query.where(Failure.failed_at >= since)
    if not include_replayed:
        query = query.where(Failure.replayed_at.is_(None))
    if before is not None:
        at, failure_id = before
        query = query.where(
            or_(Failure.failed_at < at, and_(Failure.failed_at == at, Failure.id < failure_id))
        )
    query = query.order_by(Failure.failed_at.desc(), Failure.id.desc()).limit(limit)
    return [
        FailureRecord(
            id=f.id, message_id=f.message_id, code=f.code, meaning=f.meaning, cls=f.cls,
            attempts=f.attempts, last_error=f.last_error, failed_at=f.failed_at,
            replayed_at=f.replayed_at, replayed_by=f.replayed_by, recipient=recipient,
        )
        for f, recipient in session.execute(query)
    ]
