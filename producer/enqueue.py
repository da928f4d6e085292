"""Record messages in the ledger (the outbox), then publish their ids after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from producer.validate import OPTIONS, NewMessage, one_statement, validate
from worker.clock import now
from worker.errors import IdempotencyConflict, ValidationError
from worker.kinds import Kind
from worker.ledger.campaigns import ensure_campaign
from worker.ledger.claims import mark_unpublished
from worker.ledger.clock import database_now
from worker.ledger.db import Database
from worker.ledger.idempotency import content_of, stored_content
from worker.ledger.marketing import held_for_opening
from worker.ledger.outbox import insert_due_now, insert_messages
from worker.ledger.suppressions import suppressed_among
from worker.publish import Publishes
from worker.rules.marketing import in_window, next_opening, parse_window, release_times
from worker.rules.phone import mask_phone
from worker.settings import Settings
from worker.states import HoldReason

log = logging.getLogger("fibosms.producer")

_PENDING = "fibosms_pending_publish"


@dataclass(frozen=True)
class Accepted:
    """One accepted message: its id, and whether this call recorded it (False: its
    idempotency key was known, with the same content)."""

    id: int
    created: bool
    #: the row as recorded (column → value, with its id) when this call recorded it; it
    #: answers "what was accepted" without reading the ledger again
    row: Mapping[str, Any] | None = None


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
        """Accept one message; returns its id (the existing one for a known idempotency key).

        Raises :class:`IdempotencyConflict` when the key names a message with other content.
        """
        return self.submit(phone, text, session=session, **options).id

    def submit(
        self,
        phone: str,
        text: str,
        *,
        session: Session | None = None,
        **options: Any,
    ) -> Accepted:
        """:meth:`enqueue_sms`, telling also whether this call recorded the message."""
        _check_options(options, where="")
        new = validate(phone, text, settings=self.settings, now=now(), **options)
        ids, created, rows = self._accept([new], session=session, where="")
        row = {**rows[0], "id": ids[0]} if created else None
        return Accepted(id=ids[0], created=bool(created), row=row)

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
        validated = [
            self._validate_item(index, item, kind=kind, sender=sender, at=at)
            for index, item in enumerate(messages)
        ]
        return self._accept(validated, session=session, where="messages[{}].")[0]

    def refusals(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        kind: str = Kind.MARKETING,
        sender: str | None = None,
    ) -> list[ValidationError]:
        """Every item :meth:`enqueue_many` would refuse (it stops at the first), in order;
        records nothing."""
        at = now()
        found: list[ValidationError] = []
        for index, item in enumerate(messages):
            try:
                self._validate_item(index, item, kind=kind, sender=sender, at=at)
            except ValidationError as exc:
                found.append(exc)
        return found

    def _validate_item(
        self, index: int, item: Any, *, kind: str, sender: str | None, at: datetime
    ) -> NewMessage:
        if not isinstance(item, Mapping):
            raise ValidationError(f"messages[{index}]", "must be a mapping with phone and text")
        options = {k: v for k, v in item.items() if k not in ("phone", "text")}
        _check_options(options, where=f"messages[{index}].")
        options.setdefault("kind", kind)
        options.setdefault("sender", sender)
        try:
            return validate(
                item.get("phone"), item.get("text"), settings=self.settings, now=at, **options
            )
        except ValidationError as exc:
            raise ValidationError(f"messages[{index}].{exc.field}", exc.reason) from None

    def accept(self, messages: list[NewMessage], *, session: Session | None = None) -> list[int]:
        """Accept messages that :func:`producer.validate.validate` already checked (a
        campaign checks every row before it accepts any); ids in the same order."""
        return self._accept(messages, session=session, where="")[0]

    # -- recording -------------------------------------------------------------------------

    def _accept(
        self, messages: list[NewMessage], *, session: Session | None, where: str
    ) -> tuple[list[int], list[int], list[dict[str, Any]]]:
        """Record and publish; returns every id in order, the positions this call inserted,
        and the rows as they were given to the ledger.

        ``where`` prefixes the field of a conflict (``{}`` takes the message's position).
        """
        if not messages:
            return [], [], []
        if session is not None:
            ids, inserted, fresh, rows = self._record(session, messages, where)
            self._publish_after_commit(session, fresh)
            return ids, inserted, rows
        if len(messages) == 1 and one_statement(messages[0], self.settings):
            accepted = self._accept_plain(messages[0])
            if accepted is not None:
                return accepted
        with self.db.transaction() as own:
            ids, inserted, fresh, rows = self._record(own, messages, where)
        self._publish(fresh)
        return ids, inserted, rows

    def _accept_plain(
        self, m: NewMessage
    ) -> tuple[list[int], list[int], list[dict[str, Any]]] | None:
        """The usual ``enqueue_sms``: the row committed by one statement stamped with the
        database's clock, then published. None where the database cannot do that in one
        statement (SQLite): the caller takes the transaction's path."""
        row = m.row(now())
        done = insert_due_now(self.db, row)
        if done is None:
            return None
        message_id, at = done
        row.update(created_at=at, updated_at=at, next_attempt_at=at, published_at=at)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "accepted message %s to %s (%s, %d segment(s))",
                message_id, mask_phone(m.recipient), m.kind, m.segments,
            )
        self._publish([(message_id, m.queue)])
        return [message_id], [0], [row]

    def _record(
        self, session: Session, messages: list[NewMessage], where: str
    ) -> tuple[list[int], list[int], list[tuple[int, str]], list[dict[str, Any]]]:
        """Insert the rows; returns every id in order, the positions inserted, the
        (id, queue) pairs to publish, and the rows."""
        # the ledger's times are the database's: a producer host whose clock runs ahead
        # must not record an immediate message as due in the future
        at = database_now(session)
        kinds = self.settings.suppress_kinds
        checked = [m.recipient for m in messages if m.kind in kinds]
        listed = suppressed_among(session, checked) if checked else set()
        rows = [m.row(at, suppressed=m.kind in kinds and m.recipient in listed) for m in messages]
        for name in sorted({m.campaign for m in messages if m.campaign is not None}):
            ensure_campaign(session, name, at)
        self._hold_outside_hours(session, messages, rows)
        recorded = insert_messages(session, rows)
        _check_conflicts(session, rows, recorded.inserted, where)
        fresh: list[tuple[int, str]] = []
        for i in recorded.inserted:
            m = messages[i]
            if rows[i]["status"] != "queued" or rows[i]["hold_reason"] is not None:
                continue
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
        return recorded.ids, recorded.inserted, fresh, rows

    def _hold_outside_hours(
        self, session: Session, messages: list[NewMessage], rows: list[dict[str, Any]]
    ) -> None:
        """Marketing due outside the marketing hours is recorded already held (not
        published), due when the window opens, spread behind what waits for it: the claim
        would hold it anyway, and a campaign accepted at night then costs no tasks."""
        window = parse_window(self.settings.marketing_hours)
        waiting: dict[datetime, list[int]] = {}
        for i, m in enumerate(messages):
            due = rows[i]["next_attempt_at"]
            if m.kind == Kind.MARKETING and rows[i]["status"] == "queued" and not in_window(
                due, window
            ):
                waiting.setdefault(next_opening(due, window), []).append(i)
        for opening, positions in waiting.items():
            dues = release_times(
                opening, len(positions), already_held=held_for_opening(session, opening),
                rate=self.settings.rate_limit, window=window,
            )
            for i, due in zip(positions, dues, strict=True):
                expires = rows[i]["expires_at"]
                rows[i].update(
                    next_attempt_at=due if expires is None or due < expires else expires,
                    published_at=None,
                    hold_reason=HoldReason.QUIET_HOURS.value,
                )

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


def _check_conflicts(
    session: Session, rows: Sequence[Mapping[str, Any]], inserted: Sequence[int], where: str
) -> None:
    """Raise :class:`IdempotencyConflict` for a keyed row that was not inserted because its
    key names a message with other content (in the ledger, or earlier in ``rows``)."""
    fresh = set(inserted)
    repeated = [
        i for i, row in enumerate(rows)
        if row.get("idempotency_key") is not None and i not in fresh
    ]
    if not repeated:
        return
    stored = stored_content(session, {str(rows[i]["idempotency_key"]) for i in repeated})
    for i in sorted(repeated):
        message_id, content = stored[str(rows[i]["idempotency_key"])]
        if content_of(rows[i]) != content:
            raise IdempotencyConflict(f"{where.format(i)}idempotency_key", message_id)


def _check_options(options: Mapping[str, Any], *, where: str) -> None:
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValidationError(
            f"{where}{sorted(unknown)[0]}",
            f"unknown option; the options are {', '.join(sorted(OPTIONS))}",
        )
