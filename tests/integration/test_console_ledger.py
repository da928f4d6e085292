"""The console's reads on both ledgers (SQLite and PostgreSQL): hourly outcomes, the oldest
due message per queue, dead letters by code and class, and migration 0005 both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect

from worker.ledger.console import (
    count_open_failures,
    hourly_outcomes,
    oldest_waiting,
    open_failures_page,
)
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)


def message(status: str, queue: str, *, created: datetime, sent: datetime | None = None,
            due: datetime | None = None) -> Message:
    return Message(recipient="0912345678", text="x", service_type=1, segments=1,
                   kind={"urgent": "otp", "default": "transactional", "bulk": "marketing"}[queue],
                   queue=queue, status=status, attempts=1, ambiguous_attempts=0, claims=1,
                   attempts_at_replay=0, next_attempt_at=due or created, created_at=created,
                   sent_at=sent, updated_at=created)


def failure(m: Message, code: int, cls: str, at: datetime) -> Failure:
    return Failure(message_id=m.id, code=code, meaning="m", cls=cls, attempts=1, failed_at=at)


def test_hourly_outcomes_bucket_sent_and_dead_by_utc_hour(database: Database) -> None:
    with database.transaction() as session:
        for minutes in (5, 50, 65, 600):  # 08:25, 07:40, 07:25, 22:30 the day before
            at = NOW - timedelta(minutes=minutes)
            session.add(message("sent", "urgent", created=at, sent=at))
        dead = message("dead", "bulk", created=NOW - timedelta(minutes=70))
        session.add(dead)
        session.flush()
        session.add(failure(dead, 5, "permanent", NOW - timedelta(minutes=70)))
        old = message("sent", "urgent", created=NOW - timedelta(days=2),
                      sent=NOW - timedelta(days=2))
        session.add(old)
    with database.sessions() as session:
        hours = hourly_outcomes(session, NOW - timedelta(hours=23), NOW)
    assert len(hours) == 24 and hours[0].hour == datetime(2026, 11, 27, 9, tzinfo=UTC)
    counts = {h.hour.hour: (h.sent, h.dead) for h in hours if h.sent or h.dead}
    assert counts == {8: (1, 0), 7: (2, 1), 22: (1, 0)}


def test_the_oldest_due_message_of_each_queue_and_status(database: Database) -> None:
    with database.transaction() as session:
        rows = [
            message("queued", "urgent", created=NOW - timedelta(minutes=9)),
            message("queued", "urgent", created=NOW - timedelta(minutes=3)),
            message("retrying", "urgent", created=NOW - timedelta(hours=1),
                    due=NOW + timedelta(minutes=5)),  # not due yet
            message("retrying", "bulk", created=NOW - timedelta(hours=2),
                    due=NOW - timedelta(minutes=1)),
            message("sent", "default", created=NOW - timedelta(days=1)),
        ]
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    with database.sessions() as session:
        found = oldest_waiting(session, ("urgent", "default", "bulk"), NOW)
    assert [(w.queue, w.status, w.message_id) for w in found] == [
        ("urgent", "queued", ids[0]), ("bulk", "retrying", ids[3])]


def test_open_dead_letters_by_code_and_class(database: Database) -> None:
    with database.transaction() as session:
        ms = [message("dead", "default", created=NOW - timedelta(minutes=i)) for i in range(4)]
        session.add_all(ms)
        session.flush()
        session.add_all([failure(ms[0], 5, "permanent", NOW), failure(ms[1], 5, "permanent", NOW),
                         failure(ms[2], 13, "transient", NOW), failure(ms[3], 5, "ambiguous", NOW)])
        replayed = failure(ms[0], 5, "permanent", NOW - timedelta(hours=1))
        replayed.replayed_at = NOW
        session.add(replayed)
    with database.sessions() as session:
        assert count_open_failures(session, 5) == 3
        assert count_open_failures(session, 7) == 0
        permanent = open_failures_page(session, code=5, cls="permanent")
        assert sorted(f.message_id for f in permanent) == sorted([ms[0].id, ms[1].id])
        assert all(f.recipient == "0912345678" for f in permanent)
        first = open_failures_page(session, limit=2)
        rest = open_failures_page(session, before=(first[-1].failed_at, first[-1].id))
        assert len(first) + len(rest) == 4


def test_migration_0005_makes_the_operators_table_and_the_indexes(database: Database) -> None:
    found = inspect(database.engine)
    assert "console_operators" in found.get_table_names()
    assert "ix_sms_messages_status_queue_due" in {i["name"] for i in
                                                  found.get_indexes("sms_messages")}
    assert "ix_sms_failures_code_failed_at" in {i["name"] for i in
                                                found.get_indexes("sms_failures")}
