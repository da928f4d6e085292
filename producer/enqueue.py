"""Record messages in the ledger (the outbox), then publish their ids after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, event, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from producer.validate import OPTIONS, NewMessage, validate
from worker.errors import ValidationError
from worker.ledger.claims import mark_unpublished
from worker.ledger.db import Database
from worker.ledger.models import Message
from worker.rules.phone import mask_phone
from worker.sending import Publishes
from worker.settings import Settings

log = logging.getLogger("fibosms.producer")

#: rows per INSERT statement in enqueue_many
BATCH_SIZE = 1000
_PENDING = "fibosms_pending_publish"


class Producer:
    """Accepts messages: validates, records, publishes ids after the commit."""

    def __init__(self, *, settings: Settings, db: Database, publisher: Publishes) -> None:
        self.settings = settings
        self.db = db
        self.publisher = publisher

    def enqueue_sms(
        self,
        phone: str,
        text: str,
        *,
        session: Session | None = None,
        **options: Any,
    ) -> int:
        """Accept one message; returns its id (the existing one for a known idempotency key)."""
        _check_options(options, where="")
        new = validate(phone, text, settings=self.settings, now=_now(), **options)
        return self._accept([new], session=session)[0]

    def enqueue_many(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        kind: str = "marketing",
        sender: str | None = None,
        session: Session | None = None,
    ) -> list[int]:
        """Accept a batch, all or nothing; returns the ids in the same order.

        Each item is a mapping with ``phone`` and ``text`` plus any option of
        :meth:`enqueue_sms`; ``kind`` and ``sender`` are the batch's defaults.
        """
        if not isinstance(messages, Iterable):
            raise ValidationError("messages", "must be a list of mappings with phone and text")
        now = _now()
        validated: list[NewMessage] = []
        for index, item in enumerate(messages):
            if not isinstance(item, Mapping):
                raise ValidationError(f"messages[{index}]", "must be a mapping with phone and text")
            options = {k: v for k, v in item.items() if k not in ("phone", "text")}
            _check_options(options, where=f"messages[{index}].")
            options.setdefault("kind", kind)
            options.setdefault("sender", sender)
            try:
                validated.append(
                    validate(
                        item.get("phone"), item.get("text"), settings=self.settings, now=now,
                        **options,
                    )
                )
            except ValidationError as exc:
                raise ValidationError(f"messages[{index}].{exc.field}", exc.reason) from None
        return self._accept(validated, session=session)

    # -- recording -------------------------------------------------------------------------

    def _accept(self, messages: list[NewMessage], *, session: Session | None) -> list[int]:
        if not messages:
            return []
        if session is not None:
            ids, fresh = self._insert(session, messages)
            self._publish_after_commit(session, fresh)
            return ids
        with self.db.transaction() as own:
            ids, fresh = self._insert(own, messages)
        self._publish(fresh)
        return ids

    def _insert(
        self, session: Session, messages: list[NewMessage]
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Insert the rows; returns every id in order and the (id, queue) pairs to publish."""
        now = _now()
        ids: list[int | None] = [None] * len(messages)
        fresh: list[tuple[int, str]] = []
        plain = [i for i, m in enumerate(messages) if m.idempotency_key is None]
        # in key order: two producers inserting overlapping keys then take the unique index's
        # row locks in the same order, and wait for each other instead of deadlocking
        keyed = sorted(
            (i for i, m in enumerate(messages) if m.idempotency_key is not None),
            key=lambda i: str(messages[i].idempotency_key),
        )

        dialect = session.get_bind().dialect.name
        for chunk in _chunks(plain, BATCH_SIZE):
            rows = [messages[i].row(now) for i in chunk]
            if dialect == "postgresql" and len(rows) > 1:
                new_ids = _allocate_ids(session, len(rows))
                for row, new_id in zip(rows, new_ids, strict=True):
                    row["id"] = new_id
                session.connection().execute(insert(_MESSAGES), rows)
            else:
                result = session.execute(
                    insert(Message).returning(Message.id, sort_by_parameter_order=True), rows
                )
                new_ids = list(result.scalars())
            for i, new_id in zip(chunk, new_ids, strict=True):
                ids[i] = new_id
                if messages[i].publish_now:
                    fresh.append((new_id, messages[i].queue))

        for chunk in _chunks(keyed, BATCH_SIZE):
            by_key: dict[str, dict[str, Any]] = {}
            for i in chunk:
                by_key.setdefault(str(messages[i].idempotency_key), messages[i].row(now))
            if dialect == "postgresql":
                for row, new_id in zip(
                    by_key.values(), _allocate_ids(session, len(by_key)), strict=True
                ):
                    row["id"] = new_id
                session.connection().execute(
                    _insert_ignoring_duplicates(dialect), list(by_key.values())
                )
                inserted: dict[str, int] | None = None  # known once the existing ids are read
            else:
                stmt = _insert_ignoring_duplicates(dialect).returning(
                    Message.id, Message.idempotency_key
                )
                inserted = {
                    key: new_id for new_id, key in session.execute(stmt, list(by_key.values()))
                }
            existing: dict[str, int] = {
                str(key): mid
                for key, mid in session.execute(
                    select(Message.idempotency_key, Message.id).where(
                        Message.idempotency_key.in_(list(by_key))
                    )
                )
            }
            for i in chunk:
                key = str(messages[i].idempotency_key)
                ids[i] = existing[key]
            if inserted is None:
                # ours are the rows that got the id allocated for them
                inserted = {k: mid for k, mid in existing.items() if by_key[k]["id"] == mid}
            for key, new_id in inserted.items():
                row = by_key[key]
                if row["published_at"] is not None:
                    fresh.append((new_id, row["queue"]))
        for i, m in enumerate(messages):
            log.debug(
                "accepted message %s to %s (%s, %d segment(s))",
                ids[i], mask_phone(m.recipient), m.kind, m.segments,
            )
        return [i for i in ids if i is not None], fresh

    # -- publishing ------------------------------------------------------------------------

    def _publish(self, items: list[tuple[int, str]]) -> None:
        failed = self.publisher.publish(items)
        if failed:
            with self.db.transaction() as session:
                mark_unpublished(session, failed)

    def _publish_after_commit(self, session: Session, items: list[tuple[int, str]]) -> None:
        """Publish when the caller's transaction commits; forget them if it rolls back."""
        pending: list[tuple[int, str]] = session.info.setdefault(_PENDING, [])
        pending.extend(items)
        if session.info.get(_PENDING + ".hooked"):
            return
        session.info[_PENDING + ".hooked"] = True

        def after_commit(sess: Session) -> None:
            todo = list(sess.info.get(_PENDING, []))
            sess.info[_PENDING] = []
            if todo:
                self._publish(todo)

        def after_rollback(sess: Session) -> None:
            sess.info[_PENDING] = []

        event.listen(session, "after_commit", after_commit)
        event.listen(session, "after_rollback", after_rollback)


_MESSAGES: Table = Message.__table__  # type: ignore[assignment]


def _allocate_ids(session: Session, count: int) -> list[int]:
    """``count`` ids from the table's sequence (PostgreSQL), taken in one round trip.

    The rows then go in as a plain executemany: psycopg parses one short INSERT once,
    where a 1,000-row INSERT ... RETURNING costs it a parse of 17,000 placeholders.
    """
    return list(
        session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('sms_messages', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        ).scalars()
    )


def _insert_ignoring_duplicates(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(_MESSAGES).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    if dialect == "sqlite":
        return sqlite.insert(Message).on_conflict_do_nothing(index_elements=["idempotency_key"])
    raise RuntimeError(f"unsupported database {dialect!r}")


def _check_options(options: Mapping[str, Any], *, where: str) -> None:
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValidationError(
            f"{where}{sorted(unknown)[0]}",
            f"unknown option; the options are {', '.join(sorted(OPTIONS))}",
        )


def _chunks(seq: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _now() -> datetime:
    return datetime.now(UTC)
