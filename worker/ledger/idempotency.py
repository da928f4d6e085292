"""What an idempotency key already stands for: the stored content of keyed messages.

The producer compares a repeated key's new content with this, so that the same key with
other content is refused instead of silently answered with the first message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.ledger.models import Message

#: the columns that make up a message's content, as far as an idempotency key is concerned.
#: ``next_attempt_at`` is not one: it is a schedule that moves as the message is retried.
CONTENT_COLUMNS: tuple[str, ...] = (
    "recipient", "text", "sender", "service_type", "kind", "expires_at",
)


def content_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The content of an ``sms_messages`` row (column → value), in :data:`CONTENT_COLUMNS`."""
    return tuple(row[c] for c in CONTENT_COLUMNS)


def stored_content(session: Session, keys: Iterable[str]) -> dict[str, tuple[int, tuple[Any, ...]]]:
    """For each known key: the id of its message and that message's content."""
    wanted = list(keys)
    if not wanted:
        return {}
    columns = [getattr(Message, c) for c in CONTENT_COLUMNS]
    rows = session.execute(
        select(Message.idempotency_key, Message.id, *columns).where(
            Message.idempotency_key.in_(wanted)
        )
    )
    return {str(key): (int(mid), tuple(rest)) for key, mid, *rest in rows}
