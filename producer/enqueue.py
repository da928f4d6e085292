"""Record messages in the ledger (the outbox), then publish their ids after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from producer.validate import OPTIONS, NewMessage, validate
from worker.clock import now
from worker.errors import ValidationError
from worker.kinds import Kind
from worker.ledger.claims import mark_unpublished
from worker.ledger.db import Database
from worker.ledger.outbox import insert_messages
from worker.rules.phone import mask_phone
from worker.sending import Publishes
from worker.settings import Settings

log = logging.getLogger("fibosms.producer")

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
        new = validate(phone, text, settings=self.settings, now=now(), **options)
        return self._accept([new], session=session)[0]

    def enqueue_many(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        kind: str = Kind.MARKETING,
        sender: str | None = None,
        session: Session | None = None,
    ) -> list[int]:
        """Accept a batch, all or nothing; returns the ids in the same order.

        Each item is a mapping with ``phone`` and ``text`` plus any option of
        :meth:`enqueue_sms`; ``kind`` and ``sender`` are the batch's defaults.
        """
        if not isinstance(messages, Iterable):
            raise ValidationError("messages", "must be a list of mappings with phone and text")
        at = now()
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
                        item.get("phone"), item.get("text"), settings=self.settings, now=at,
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
            ids, fresh = self._record(session, messages)
            self._publish_after_commit(session, fresh)
            return ids
        with self.db.transaction() as own:
            ids, fresh = self._record(own, messages)
        self._publish(fresh)
        return ids

    def _record(
        self, session: Session, messages: list[NewMessage]
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Insert the rows; returns every id in order and the (id, queue) pairs to publish."""
        at = now()
        rows = [m.row(at) for m in messages]
        recorded = insert_messages(session, rows)
        fresh: list[tuple[int, str]] = []
        for i in recorded.inserted:
            m = messages[i]
            # a keyed row is published when it was recorded as due now; a plain one when
            # it has no send_at
            due_now = m.publish_now if m.idempotency_key is None else (
                rows[i]["published_at"] is not None
            )
            if due_now:
                fresh.append((recorded.ids[i], m.queue))
        for i, m in enumerate(messages):
            log.debug(
                "accepted message %s to %s (%s, %d segment(s))",
                recorded.ids[i], mask_phone(m.recipient), m.kind, m.segments,
            )
        return recorded.ids, fresh

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


def _check_options(options: Mapping[str, Any], *, where: str) -> None:
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValidationError(
            f"{where}{sorted(unknown)[0]}",
            f"unknown option; the options are {', '.join(sorted(OPTIONS))}",
        )
