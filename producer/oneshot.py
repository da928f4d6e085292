"""Accept one plain message in a process that does nothing else (``fibosms send``): the
durable work of ``enqueue_sms``, without importing SQLAlchemy, kombu or redis-py.

A command that starts, records one message and exits spends most of its time importing
libraries: SQLAlchemy alone is about 0.2 s here, redis-py 0.05 s. When the ledger is
PostgreSQL (psycopg) or an SQLite file, the broker a plain ``redis://`` URL or the embedded
broker's SQLite file, and the message is one that ``enqueue_sms`` records with a single
INSERT (due now, no idempotency key, not marketing, not a kind the suppression list is
consulted for), this module does the same work through the driver, Redis's wire protocol or
the broker's tables: the same row, the same task message, the same fallback to the sweep
when the publish fails. Anything else returns None, and the caller takes
:class:`producer.enqueue.Producer`, which handles every case.
"""

from __future__ import annotations

import logging
from typing import Any

from producer.validate import one_statement, validate
from worker.clock import now
from worker.ledger import oneshot
from worker.publish import broker_publisher
from worker.rules.phone import mask_phone
from worker.settings import Settings

log = logging.getLogger("fibosms.producer")


def send_once(settings: Settings, phone: Any, text: Any, **options: Any) -> int | None:
    """Validate and record one message and publish its id; its id, or None when this path
    does not apply (see the module's text) and nothing was recorded.

    Raises ``ValidationError`` for a refused message, ``psycopg.Error`` or ``sqlite3.Error``
    when the ledger
    refuses or cannot be reached.
    """
    ledger = oneshot.ledger_for(settings.database_url)
    if ledger is None:
        return None
    publisher = broker_publisher(settings, oneshot=True)
    if not publisher.speaks_wire or not ledger.ready():
        return None
    new = validate(phone, text, settings=settings, now=now(), **options)
    if not one_statement(new, settings):
        return None
    message_id, _ = ledger.insert_due_now(new.row(now()))
    log.debug(
        "accepted message %s to %s (%s, %d segment(s))",
        message_id,
        mask_phone(new.recipient),
        new.kind,
        new.segments,
    )
    if publisher.publish([(message_id, new.queue)]):
        ledger.mark_unpublished(message_id)
    return message_id
