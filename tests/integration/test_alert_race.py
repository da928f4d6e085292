"""One open alert per condition, however many transactions raise it at once.

Many worker threads can record an account-wide code (a wrong password) in the same moment, each
raising the ``paused`` alert in its own transaction; two balance polls (beat, and an operator's
command) can both find the balance low. Each condition must still alert once: one open row,
one webhook delivery. Real PostgreSQL and SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.fixtures.services import empty_pg_database
from worker.ledger.db import Database
from worker.ledger.migrate import upgrade
from worker.ledger.models import Alert
from worker.watch.alerts import clear_alert, raise_alert

RACERS = 8


def race(database: Database, key: str) -> list[bool]:
    """``RACERS`` threads raise ``key`` at once, each in its own transaction; who opened it."""
    # SQLite's writers take the database's lock as their transaction begins, so they queue
    # instead of racing; PostgreSQL's all look, then all write
    start = threading.Barrier(RACERS) if database.dialect == "postgresql" else None
    opened: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            with database.transaction() as session:
                # every transaction has looked before any of them writes: the race at its widest
                session.execute(select(func.count()).select_from(Alert))
                if start is not None:
                    start.wait(timeout=10)
                got = raise_alert(
                    session, kind="paused", key=key, message="sending paused",
                    now=datetime.now(UTC),
                )
            with lock:
                opened.append(got)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return opened


def open_rows(database: Database, key: str) -> int:
    with database.sessions() as session:
        return int(session.scalar(
            select(func.count()).select_from(Alert).where(
                Alert.key == key, Alert.cleared_at.is_(None)
            )
        ) or 0)


def test_racing_raises_open_one_alert_and_one_of_them_says_so(database: Database) -> None:
    opened = race(database, "paused")
    assert open_rows(database, "paused") == 1
    assert sorted(opened) == [False] * (RACERS - 1) + [True]


def test_once_cleared_the_condition_alerts_again_once(database: Database) -> None:
    race(database, "low_balance")
    with database.transaction() as session:
        assert clear_alert(session, key="low_balance", now=datetime.now(UTC))
    assert open_rows(database, "low_balance") == 0
    assert sorted(race(database, "low_balance")) == [False] * (RACERS - 1) + [True]
    assert open_rows(database, "low_balance") == 1
    with database.sessions() as session:
        assert session.scalar(
            select(func.count()).select_from(Alert).where(Alert.key == "low_balance")
        ) == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own, never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with empty_pg_database("fibosms_alerts") as url:
        yield url


def test_the_migration_closes_the_open_duplicates_the_old_code_left(fresh_url: str) -> None:
    upgrade(fresh_url, "0007")
    raised = [datetime(2026, 12, 1, 8, minute, tzinfo=UTC) for minute in range(4)]
    database = Database(fresh_url)
    try:
        with database.transaction() as session:
            for key, at in (("paused", raised[0]), ("paused", raised[1]), ("paused", raised[2]),
                            ("low_balance", raised[3])):
                session.add(Alert(kind=key, key=key, message="m", raised_at=at))
        upgrade(fresh_url)
        with database.sessions() as session:
            rows = session.scalars(select(Alert).order_by(Alert.id)).all()
            assert [(a.key, a.cleared_at) for a in rows] == [
                ("paused", None), ("paused", raised[1]), ("paused", raised[2]),
                ("low_balance", None),
            ]
        # and the index holds from now on
        with database.transaction() as session:
            assert not raise_alert(session, kind="paused", key="paused", message="m",
                                   now=datetime.now(UTC))
        assert open_rows(database, "paused") == 1
    finally:
        database.dispose()
