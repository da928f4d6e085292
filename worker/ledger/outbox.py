"""The outbox insert: new ``sms_messages`` rows, with the idempotency keys they carry.

A row with an idempotency key that is already in the ledger is not inserted again: its
existing id is returned instead. On PostgreSQL the ids of a batch come from the table's
sequence first, so the rows go in as a plain executemany (see :func:`_allocate_ids`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.ledger.db import Database
from worker.ledger.models import Message
from worker.ledger.oneshot import DUE_NOW_COLUMNS

#: rows per INSERT statement
BATCH_SIZE = 1000

_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_INSERT_ONE = insert(_MESSAGES).returning(_MESSAGES.c.id)
#: a row due at once, its times the database server's (PostgreSQL): the ledger's clock
_INSERT_DUE_NOW = (
    insert(_MESSAGES)
    .values({name: func.statement_timestamp() for name in DUE_NOW_COLUMNS})
    .returning(_MESSAGES.c.id, _MESSAGES.c.created_at)
)
_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('sms_messages', 'id')) "
    "FROM generate_series(1, :count)"
)


@dataclass(frozen=True)
class Recorded:
    """What :func:`insert_messages` did with the rows it was given."""

    #: one id per row, in the rows' order (the existing id for a known idempotency key)
    ids: list[int]
    #: positions of the rows this call inserted (for a key given twice, the first one)
    inserted: list[int]


def insert_messages(session: Session, rows: Sequence[Mapping[str, Any]]) -> Recorded:
    """Insert ``sms_messages`` rows (column → value, the same columns in each) in the
    caller's transaction.

    Rows without an ``idempotency_key`` are always inserted; a row whose key is already
    in the ledger (or earlier in ``rows``) is not, and gets the existing row's id.
    """
    ids: list[int | None] = [None] * len(rows)
    inserted: list[int] = []
    plain = [i for i, row in enumerate(rows) if row.get("idempotency_key") is None]
    # in key order: two producers inserting overlapping keys then take the unique index's
    # row locks in the same order, and wait for each other instead of deadlocking
    keyed = sorted(
        (i for i, row in enumerate(rows) if row.get("idempotency_key") is not None),
        key=lambda i: str(rows[i]["idempotency_key"]),
    )
    dialect = session.get_bind().dialect.name

    for chunk in _chunks(plain, BATCH_SIZE):
        batch = [dict(rows[i]) for i in chunk]
        if dialect == "postgresql" and len(batch) > 1:
            new_ids = _allocate_ids(session, len(batch))
            for row, new_id in zip(batch, new_ids, strict=True):
                row["id"] = new_id
            session.connection().execute(insert(_MESSAGES), batch)
        elif len(batch) == 1:
            # one row (enqueue_sms): a Core statement on the session's connection, without
            # the ORM's bulk-insert machinery around it
            new_ids = [session.connection().execute(_INSERT_ONE, batch[0]).scalar_one()]
        else:
            result = session.execute(
                insert(Message).returning(Message.id, sort_by_parameter_order=True), batch
            )
            new_ids = list(result.scalars())
        for i, new_id in zip(chunk, new_ids, strict=True):
            ids[i] = new_id
            inserted.append(i)

    for chunk in _chunks(keyed, BATCH_SIZE):
        first: dict[str, int] = {}  # key -> position of its first row
        for i in chunk:
            first.setdefault(str(rows[i]["idempotency_key"]), i)
        by_key = {key: dict(rows[i]) for key, i in first.items()}
        new_keys: set[str]
        if dialect == "postgresql":
            for row, new_id in zip(
                by_key.values(), _allocate_ids(session, len(by_key)), strict=True
            ):
                row["id"] = new_id
            session.connection().execute(
                _insert_ignoring_duplicates(dialect), list(by_key.values())
            )
        else:
            stmt = _insert_ignoring_duplicates(dialect).returning(Message.idempotency_key)
            new_keys = {str(key) for key in session.scalars(stmt, list(by_key.values()))}
        existing = ids_for_keys(session, list(by_key))
        for i in chunk:
            ids[i] = existing[str(rows[i]["idempotency_key"])]
        if dialect == "postgresql":
            # ours are the rows that got the id allocated for them
            new_keys = {k for k, mid in existing.items() if by_key[k]["id"] == mid}
        inserted.extend(first[key] for key in by_key if key in new_keys)
    return Recorded(ids=[i for i in ids if i is not None], inserted=inserted)


def insert_due_now(db: Database, row: Mapping[str, Any]) -> tuple[int, datetime] | None:
    """Insert one ``sms_messages`` row, due at once and without an idempotency key, in one
    autocommitted statement; its id and time, or None when the database cannot (not
    PostgreSQL).

    A single statement is atomic and durable by itself, and it costs one round trip where a
    transaction around it costs three (BEGIN, INSERT, COMMIT). Its times (created, updated,
    due, published) are the server's ``statement_timestamp()``: the ledger's clock, whatever
    the producer host's says.
    """
    if db.dialect != "postgresql":
        return None
    values = {k: v for k, v in row.items() if k not in DUE_NOW_COLUMNS}
    with db.autocommit() as connection:
        message_id, at = connection.execute(_INSERT_DUE_NOW, values).one()
    return int(message_id), at


def ids_for_keys(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """The ids of the messages carrying these idempotency keys (unknown keys left out)."""
    return {
        str(key): mid
        for key, mid in session.execute(
            select(Message.idempotency_key, Message.id).where(
                Message.idempotency_key.in_(list(keys))
            )
        )
    }


def _allocate_ids(session: Session, count: int) -> list[int]:
    """``count`` ids from the table's sequence (PostgreSQL), taken in one round trip.

    The rows then go in as a plain executemany: psycopg parses one short INSERT once,
    where a 1,000-row INSERT ... RETURNING costs it a parse of 17,000 placeholders.
    """
    return list(session.execute(_NEXT_IDS, {"count": count}).scalars())


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(_MESSAGES).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    if dialect == "sqlite":
        return sqlite.insert(Message).on_conflict_do_nothing(index_elements=["idempotency_key"])
    raise RuntimeError(f"unsupported database {dialect!r}")


def _chunks(seq: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
