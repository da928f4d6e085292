"""The ledger's named statements (outbox, account, alerts, views, metrics), on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from worker.ledger.account import (
    ReconciliationRecord,
    balances_since,
    last_polls,
    latest_balance,
    latest_totals,
    record_balance,
    record_totals,
    save_reconciliation,
)
from worker.ledger.alerts import (
    close_alert,
    list_open_alerts,
    mark_delivered,
    open_alert,
    undelivered_alerts,
)
from worker.ledger.db import Database
from worker.ledger.metrics import sent_latency
from worker.ledger.models import Failure, Message, Reconciliation
from worker.ledger.outbox import insert_messages
from worker.ledger.views import day_counts, failures, failures_of, message_record

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def message_row(key: str | None = None, *, at: datetime = T0, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "idempotency_key": key,
        "recipient": "0912345678",
        "text": "Ma OTP 123456",
        "sender": None,
        "service_type": 1,
        "segments": 1,
        "kind": "transactional",
        "queue": "default",
        "status": "queued",
        "attempts": 0,
        "ambiguous_attempts": 0,
        "next_attempt_at": at,
        "expires_at": None,
        "published_at": at,
        "created_at": at,
        "sent_at": None,
        "updated_at": at,
    }
    row.update(values)
    return row


def add_messages(db: Database, *rows: dict[str, Any]) -> list[int]:
    with db.transaction() as session:
        return insert_messages(session, list(rows)).ids


# -- outbox ---------------------------------------------------------------------------------


def test_insert_returns_ids_in_order_and_which_rows_it_inserted(database: Database) -> None:
    [known] = add_messages(database, message_row("known"))
    rows = [
        message_row(),
        message_row("b"),
        message_row("known"),
        message_row(),
        message_row("a"),
        message_row("b"),
    ]
    with database.transaction() as session:
        recorded = insert_messages(session, rows)
    ids = recorded.ids
    assert len(ids) == 6 and ids[2] == known and ids[1] == ids[5]
    assert len({ids[0], ids[1], ids[3], ids[4], known}) == 5
    assert ids[0] < ids[3]  # plain rows keep their order
    # the known key and the second "b" were not inserted; plain rows first, then by key
    assert recorded.inserted == [0, 3, 4, 1]
    with database.sessions() as session:
        assert session.query(Message).count() == 5


def test_insert_of_a_large_plain_batch_gives_distinct_ids_in_order(database: Database) -> None:
    ids = add_messages(database, *[message_row() for _ in range(1500)])
    assert len(set(ids)) == 1500 and ids == sorted(ids)


# -- account --------------------------------------------------------------------------------


def test_latest_balance_is_the_last_poll_and_ties_go_to_the_later_row(
    database: Database,
) -> None:
    with database.sessions() as session:
        assert latest_balance(session) is None
        assert last_polls(session).balance is None and last_polls(session).totals is None
    with database.transaction() as session:
        record_balance(session, Decimal(500), T0)
        record_balance(session, Decimal(300), T0 - timedelta(hours=1))  # a later row, older
        record_balance(session, Decimal(100), T0 - timedelta(hours=2))
        session.flush()
        record_balance(session, Decimal(450), T0)  # same moment as the first, written after
    with database.sessions() as session:
        latest = latest_balance(session)
        assert latest is not None and latest.balance == Decimal(450) and latest.polled_at == T0
        since = balances_since(session, T0 - timedelta(hours=1))
        assert [b.polled_at for b in since] == [T0 - timedelta(hours=1), T0, T0]
        assert sorted(b.balance for b in since) == [Decimal(300), Decimal(450), Decimal(500)]
        assert last_polls(session).balance == T0 and last_polls(session).totals is None


def test_latest_totals_is_per_day(database: Database) -> None:
    day = T0.date()
    with database.transaction() as session:
        record_totals(session, day, success=5, failed=1, pending=0, now=T0)
        record_totals(session, day, success=7, failed=1, pending=2, now=T0 + timedelta(hours=1))
        record_totals(session, day - timedelta(days=1), success=9, failed=0, pending=0,
                      now=T0 + timedelta(hours=2))
    with database.sessions() as session:
        totals = latest_totals(session, day)
        assert totals is not None
        assert (totals.success, totals.failed, totals.pending) == (7, 1, 2)
        assert latest_totals(session, day + timedelta(days=1)) is None
        assert last_polls(session).totals == T0 + timedelta(hours=2)


def test_a_second_reconciliation_of_a_day_replaces_the_first(database: Database) -> None:
    day = T0.date()
    for difference in (3, 0):
        with database.transaction() as session:
            save_reconciliation(
                session,
                ReconciliationRecord(day, 10, 1, 2, 10 + difference, 0, 0, difference,
                                     difference > 0, T0),
            )
    with database.sessions() as session:
        rows = session.query(Reconciliation).all()
        assert [(r.difference, r.mismatch, r.gateway_success) for r in rows] == [(0, False, 10)]


# -- alerts ---------------------------------------------------------------------------------


def test_an_alert_opens_once_until_cleared_and_is_delivered_once(database: Database) -> None:
    with database.transaction() as session:
        assert open_alert(session, kind="paused", key="paused", message="m1", now=T0)
        assert not open_alert(session, kind="paused", key="paused", message="m2", now=T0)
        assert open_alert(session, kind="low_balance", key="low_balance", message="m3",
                          now=T0 + timedelta(seconds=1))
    with database.transaction() as session:
        assert close_alert(session, key="paused", now=T0)
        assert not close_alert(session, key="paused", now=T0)
    with database.sessions() as session:
        assert [a.key for a in list_open_alerts(session)] == ["low_balance"]
        pending = undelivered_alerts(session)
    assert [(a.key, a.cleared_at is None) for a in pending] == [
        ("paused", False), ("low_balance", True)
    ]
    with database.transaction() as session:
        mark_delivered(session, pending[0].id, T0)
    with database.sessions() as session:
        assert [a.key for a in undelivered_alerts(session)] == ["low_balance"]


# -- views ----------------------------------------------------------------------------------


def test_day_counts_take_the_start_and_leave_the_end(database: Database) -> None:
    start, end = T0, T0 + timedelta(days=1)
    ids = add_messages(
        database,
        message_row(status="sent", sent_at=start),
        message_row(status="sent", sent_at=start + timedelta(hours=5)),
        message_row(status="sent", sent_at=end),
        message_row(status="sent", sent_at=start - timedelta(seconds=1)),
        message_row(status="retrying", at=end - timedelta(seconds=1)),
        message_row(status="queued", at=end),
        message_row(status="dead"),
    )
    with database.transaction() as session:
        session.add(Failure(message_id=ids[6], code=3, meaning="m", cls="permanent",
                            attempts=1, failed_at=end - timedelta(seconds=1)))
    with database.sessions() as session:
        counts = day_counts(session, start, end)
        assert (counts.sent, counts.dead, counts.in_flight) == (2, 1, 1)
        cut = day_counts(session, start, end, sent_until=start + timedelta(hours=1))
        assert cut.sent == 1 and cut.dead == 1


def test_failures_filter_order_and_carry_the_recipient(database: Database) -> None:
    a, b = add_messages(database, message_row(status="dead"), message_row(status="dead"))
    with database.transaction() as session:
        session.add_all([
            Failure(message_id=a, code=3, meaning="x", cls="permanent", attempts=1,
                    failed_at=T0, replayed_at=T0 + timedelta(minutes=1), replayed_by="op"),
            Failure(message_id=a, code=5, meaning="y", cls="transient", attempts=4,
                    failed_at=T0 + timedelta(minutes=2)),
            Failure(message_id=b, code=3, meaning="z", cls="permanent", attempts=1,
                    failed_at=T0 + timedelta(minutes=3)),
        ])
    with database.sessions() as session:
        assert [(f.message_id, f.code) for f in failures(session)] == [(b, 3), (a, 5)]
        assert [f.message_id for f in failures(session, code=3, include_replayed=True)] == [b, a]
        assert len(failures(session, since=T0 + timedelta(minutes=3))) == 1
        assert len(failures(session, include_replayed=True, limit=2)) == 2
        assert all(f.recipient == "0912345678" for f in failures(session))
        history = failures_of(session, a)
        assert [f.code for f in history] == [3, 5] and history[0].replayed_by == "op"
        assert all(f.recipient is None for f in history)
        record = message_record(session, a)
        assert record is not None and record.status == "dead" and record.created_at == T0
        assert message_record(session, b + 1000) is None


# -- metrics --------------------------------------------------------------------------------


def test_sent_latency_counts_each_message_under_its_bounds(database: Database) -> None:
    add_messages(
        database,
        message_row(status="sent", sent_at=T0 + timedelta(seconds=3)),
        message_row(status="sent", sent_at=T0 + timedelta(seconds=30)),
        message_row(status="sent", queue="urgent", sent_at=T0 + timedelta(seconds=0.5)),
        message_row(status="dead", sent_at=T0 + timedelta(seconds=1)),
    )
    with database.sessions() as session:
        groups = {g.queue: g for g in sent_latency(session, T0, (1.0, 5.0, 60.0))}
    assert set(groups) == {"default", "urgent"}
    assert groups["default"].count == 2 and groups["default"].at_most == (0, 1, 2)
    assert abs(groups["default"].total_seconds - 33.0) < 0.01
    assert groups["urgent"].at_most == (1, 1, 1)
