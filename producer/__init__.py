"""What an application imports to hand messages over.

>>> from producer import enqueue_sms
>>> message_id = enqueue_sms("0912 345 678", "Ma OTP cua ban la 123456", kind="otp")

The settings come from the ``FIBOSMS_*`` environment, read once; the database engine and
the broker connection are made on first use in this process, never at import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from worker.errors import IdempotencyConflict, ValidationError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from producer.enqueue import Accepted, Producer

__all__ = [
    "Accepted",
    "IdempotencyConflict",
    "Producer",
    "ValidationError",
    "default_producer",
    "enqueue_many",
    "enqueue_sms",
]

#: imported on first use: SQLAlchemy comes with them, and a process that only validates, or
#: records one plain message (``fibosms send``, producer.oneshot), does without it
_LAZY = frozenset({"Accepted", "Producer"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from producer import enqueue

        return getattr(enqueue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_lock = threading.Lock()
_producer: Producer | None = None
_pid: int | None = None


def default_producer() -> Producer:
    """This process's producer, built from the environment on first use."""
    global _producer, _pid
    with _lock:
        if _producer is None or _pid != os.getpid():
            from producer.enqueue import Producer
            from worker.ledger.db import Database
            from worker.publish import broker_publisher
            from worker.settings import get_settings

            settings = get_settings()
            # Celery's task messages written straight through kombu: no Celery app is built
            _producer = Producer(
                settings=settings,
                db=Database(settings.database_url),
                publisher=broker_publisher(settings),
            )
            _pid = os.getpid()
        return _producer


def enqueue_sms(
    phone: str,
    text: str,
    *,
    sender: str | None = None,
    kind: str = "transactional",
    idempotency_key: str | None = None,
    unicode: bool | None = None,
    send_at: Any = None,
    expires_at: Any = None,
    strip_diacritics: bool | None = None,
    session: Session | None = None,
) -> int:
    """Accept one SMS; returns its id. Raises ValidationError naming the bad field, and
    IdempotencyConflict (a ValidationError) when ``idempotency_key`` already names a message
    with other content.

    ``session``: the caller's SQLAlchemy session; the message then exists (and is
    published) only if that session's transaction commits.
    """
    options: dict[str, Any] = {
        "sender": sender,
        "kind": kind,
        "idempotency_key": idempotency_key,
        "unicode": unicode,
        "send_at": send_at,
        "expires_at": expires_at,
        "strip_diacritics": strip_diacritics,
    }
    return default_producer().enqueue_sms(phone, text, session=session, **options)


def enqueue_many(
    messages: Iterable[Mapping[str, Any]],
    *,
    kind: str = "marketing",
    sender: str | None = None,
    session: Session | None = None,
) -> list[int]:
    """Accept a batch (dicts with ``phone``, ``text`` and any option); ids in the same order."""
    return default_producer().enqueue_many(messages, kind=kind, sender=sender, session=session)
