"""Prometheus metrics: the ledger collector on both databases, queue depth in real Redis,
``fibosms metrics`` as a real server, and a real worker serving its own call metrics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT, Stack, statuses, wait_for
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message
from worker.metrics import build_registry
from worker.settings import Settings

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Rows are placed relative to the test's own start, not the module's import."""
    global NOW
    NOW = datetime.now(UTC)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(sample name, labels) → value`` from Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return scraped[(name, frozenset(labels.items()))]


def add_message(db: Database, *, status: str, queue: str = "default", created_ago: float = 60,
                sent_after: float | None = None, last_code: int | None = None,
                attempts: int = 0, ambiguous: int = 0, due_ago: float = 0,
                published: bool = True, claimed_ago: float | None = None) -> int:
    created = NOW - timedelta(seconds=created_ago)
    m = Message(
        recipient="0912345678", text="t", sender=None, service_type=0, segments=1,
        kind={"urgent": "otp", "default": "transactional", "bulk": "marketing"}[queue],
        queue=queue, status=status, attempts=attempts, ambiguous_attempts=ambiguous,
        last_code=last_code, next_attempt_at=NOW - timedelta(seconds=due_ago),
        published_at=created if published else None,
        claimed_at=None if claimed_ago is None else NOW - timedelta(seconds=claimed_ago),
        created_at=created, updated_at=NOW,
        sent_at=None if sent_after is None else created + timedelta(seconds=sent_after),
    )
    with db.transaction() as session:
        session.add(m)
        session.flush()
        return m.id


def add_failure(db: Database, message_id: int, *, code: int | None, cls: str,
                replayed: bool = False) -> None:
    with db.transaction() as session:
        session.add(Failure(
            message_id=message_id, code=code, meaning="m", cls=cls, attempts=1,
            failed_at=NOW, replayed_at=NOW if replayed else None,
        ))


def test_the_ledger_collector_counts_backlog_outcomes_latency_and_dead_letters(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    # Given a ledger with a backlog, recent outcomes and dead letters
    add_message(database, status="queued", queue="urgent", due_ago=90)
    add_message(database, status="queued", queue="urgent", due_ago=30, published=False)
    add_message(database, status="retrying", queue="default", last_code=2, attempts=2,
                due_ago=-600)  # not due for ten minutes
    add_message(database, status="sending", queue="bulk", attempts=1, claimed_ago=3600)
    add_message(database, status="sent", queue="urgent", last_code=200, attempts=1,
                sent_after=0.5)
    add_message(database, status="sent", queue="urgent", last_code=200, attempts=3,
                ambiguous=1, sent_after=3)
    add_message(database, status="sent", queue="default", last_code=200, attempts=1,
                sent_after=45)
    # sent, but before the window: counted nowhere recent
    add_message(database, status="sent", queue="default", last_code=200, attempts=1,
                created_ago=7 * 86400, sent_after=1)
    dead_7 = add_message(database, status="dead", queue="default", last_code=7, attempts=1)
    dead_2 = add_message(database, status="dead", queue="bulk", last_code=2, attempts=4)
    add_failure(database, dead_7, code=7, cls="permanent")
    add_failure(database, dead_2, code=2, cls="transient", replayed=True)
    add_failure(database, dead_2, code=2, cls="transient")
    settings = Settings.from_env({
        "FIBOSMS_DATABASE_URL": db_url, "FIBOSMS_DATA_DIR": str(tmp_path),
        "FIBOSMS_SENDING_TIMEOUT_SECONDS": "120",
    })

    # When Prometheus scrapes
    scraped = samples(generate_latest(build_registry(settings, database)).decode())

    # Then the backlog, whatever its age
    assert value(scraped, "fibosms_messages_in_flight", status="queued", queue="urgent",
                 last_code="none") == 2
    assert value(scraped, "fibosms_messages_in_flight", status="retrying", queue="default",
                 last_code="2") == 1
    assert value(scraped, "fibosms_messages_in_flight", status="sending", queue="bulk",
                 last_code="none") == 1
    assert 89 <= value(scraped, "fibosms_oldest_due_seconds", queue="urgent") <= 150
    assert value(scraped, "fibosms_oldest_due_seconds", queue="default") == 0  # not due yet
    assert value(scraped, "fibosms_unpublished_messages", queue="urgent") == 1
    assert value(scraped, "fibosms_stalled_sending_messages", queue="bulk") == 1
    # recent outcomes and their attempts; the week-old message is outside the window
    assert value(scraped, "fibosms_recent_messages", status="sent", queue="urgent",
                 last_code="200") == 2
    assert value(scraped, "fibosms_recent_messages", status="sent", queue="default",
                 last_code="200") == 1
    assert value(scraped, "fibosms_recent_attempts", status="sent", queue="urgent") == 4
    assert value(scraped, "fibosms_recent_ambiguous_attempts", status="sent",
                 queue="urgent") == 1
    # time from acceptance to the gateway's 200: 0.5 s and 3 s in urgent, 45 s in default
    bucket = "fibosms_enqueue_to_accepted_seconds_bucket"
    assert value(scraped, bucket, queue="urgent", le="1.0") == 1
    assert value(scraped, bucket, queue="urgent", le="2.0") == 1
    assert value(scraped, bucket, queue="urgent", le="5.0") == 2
    assert value(scraped, bucket, queue="default", le="30.0") == 0
    assert value(scraped, bucket, queue="default", le="60.0") == 1
    assert value(scraped, bucket, queue="default", le="+Inf") == 1
    assert value(scraped, bucket, queue="bulk", le="+Inf") == 0
    assert value(scraped, "fibosms_enqueue_to_accepted_seconds_gsum",
                 queue="urgent") == pytest.approx(3.5, abs=0.01)
    # every dead letter ever (a counter), and the ones still open
    assert value(scraped, "fibosms_dead_letters_total", code="2", **{"class": "transient"}) == 2
    assert value(scraped, "fibosms_dead_letters_open", code="2", **{"class": "transient"}) == 1
    assert value(scraped, "fibosms_dead_letters_open", code="7", **{"class": "permanent"}) == 1
    assert value(scraped, "fibosms_ledger_up") == 1
    # no Redis broker here: no queue depth, and no claim that it is down
    assert not any(name == "fibosms_queue_depth" for name, _ in scraped)


def test_a_ledger_that_cannot_be_read_reports_down_instead_of_failing_the_scrape(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    db = Database(url)
    settings = Settings.from_env({"FIBOSMS_DATABASE_URL": url, "FIBOSMS_DATA_DIR": str(tmp_path)})
    scraped = samples(generate_latest(build_registry(settings, db)).decode())
    db.dispose()
    assert value(scraped, "fibosms_ledger_up") == 0


def test_queue_depth_is_read_from_redis(make_stack: Callable[..., Stack], pg_url: str,
                                         redis_url: str) -> None:
    from tests.fixtures.services import clean_ledger

    # Given messages published while no worker runs
    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    for _ in range(3):
        stack.producer.enqueue_sms("0912345678", "otp", kind="otp")
    stack.producer.enqueue_sms("0912345678", "promo", kind="marketing")
    # When scraped
    scraped = samples(generate_latest(build_registry(stack.settings, stack.db)).decode())
    # Then
    assert value(scraped, "fibosms_queue_depth", queue="urgent") == 3
    assert value(scraped, "fibosms_queue_depth", queue="bulk") == 1
    assert value(scraped, "fibosms_queue_depth", queue="default") == 0
    assert value(scraped, "fibosms_broker_up") == 1
    assert value(scraped, "fibosms_messages_in_flight", status="queued", queue="urgent",
                 last_code="none") == 3
    assert value(scraped, "fibosms_breaker_open") == 0


def test_the_circuit_breaker_shows_in_the_metrics(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    import redis as redis_lib

    from worker.breaker import RedisBreaker

    stack = make_stack(pg_url, redis_url)
    breaker = RedisBreaker(redis_lib.Redis.from_url(redis_url), threshold=3, cooldown=30)
    for _ in range(2):
        breaker.failure()
    scraped = samples(generate_latest(build_registry(stack.settings, stack.db)).decode())
    assert value(scraped, "fibosms_breaker_consecutive_failures") == 2
    assert value(scraped, "fibosms_breaker_open") == 0
    breaker.failure()
    scraped = samples(generate_latest(build_registry(stack.settings, stack.db)).decode())
    assert value(scraped, "fibosms_breaker_open") == 1


def test_an_unreachable_broker_reports_down(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()  # nothing listens there
    settings = Settings.from_env({
        "FIBOSMS_DATABASE_URL": sqlite_url, "FIBOSMS_DATA_DIR": str(tmp_path),
        "FIBOSMS_BROKER_URL": f"redis://127.0.0.1:{port}/0",
    })
    db = Database(sqlite_url)
    scraped = samples(generate_latest(build_registry(settings, db)).decode())
    db.dispose()
    assert value(scraped, "fibosms_broker_up") == 0
    assert value(scraped, "fibosms_ledger_up") == 1


def test_fibosms_metrics_serves_prometheus_text_until_terminated(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    stack = make_stack(pg_url, redis_url)
    log = tmp_path / "metrics.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fibosms.cli", "metrics", "--port", "0"],
            cwd=ROOT, env={**os.environ, **stack.env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        found = wait_for(
            lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text()),
            timeout=30,
        )
        response = requests.get(f"http://127.0.0.1:{found.group(1)}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        scraped = samples(response.text)
        assert value(scraped, "fibosms_ledger_up") == 1
        assert value(scraped, "fibosms_broker_up") == 1
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_worker_serves_gateway_latency_and_task_outcomes(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, sandbox: object
) -> None:
    from tests.fixtures.services import clean_ledger

    port = free_port()
    stack = make_stack(pg_url, redis_url, FIBOSMS_WORKER_METRICS_PORT=str(port))
    clean_ledger(stack.db)
    stack.start_worker()
    ids = [stack.producer.enqueue_sms("0912345678", f"m{i}") for i in range(3)]
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=30)

    def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    got = wait_for(
        lambda: (s := scraped()).get(
            ("fibosms_task_results_total",
             frozenset({"task": "fibosms.send_sms", "result": "sent"}.items()))
        ) == 3 and s
    )
    assert value(got, "fibosms_gateway_call_seconds_count", op="send", outcome="ok") == 3
    assert value(got, "fibosms_gateway_call_seconds_sum", op="send", outcome="ok") > 0

    # a sweep pass, as beat would start it
    from worker.brokers import SWEEP_TASK

    stack.app.send_task(SWEEP_TASK, queue="default")
    swept = wait_for(
        lambda: (s := scraped()).get(("fibosms_sweep_last_run_timestamp_seconds", frozenset()))
        and s
    )
    assert value(swept, "fibosms_task_results_total", task="fibosms.sweep", result="ok") == 1


def test_the_account_watch_shows_balance_poll_ages_pause_and_alerts(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    from decimal import Decimal

    from worker.ledger.account import pause
    from worker.ledger.models import BalancePoll, TotalsPoll
    from worker.watch.alerts import raise_alert
    from worker.watch.days import vietnam_day

    now = datetime.now(UTC)
    with database.transaction() as session:
        session.add(BalancePoll(balance=Decimal("1234.50"), polled_at=now - timedelta(seconds=40)))
        session.add(TotalsPoll(day=vietnam_day(now), success=3, failed=0, pending=0,
                               polled_at=now - timedelta(seconds=10)))
        pause(session, code=14, reason="insufficient balance", message_id=1, now=now)
        raise_alert(session, kind="paused", key="paused", message="paused", now=now)
    settings = Settings.from_env({"FIBOSMS_DATABASE_URL": db_url,
                                  "FIBOSMS_DATA_DIR": str(tmp_path)})
    scraped = samples(generate_latest(build_registry(settings, database)).decode())
    assert value(scraped, "fibosms_balance") == 1234.5
    assert 39 <= value(scraped, "fibosms_last_poll_age_seconds", poll="balance") <= 100
    assert 9 <= value(scraped, "fibosms_last_poll_age_seconds", poll="totals") <= 70
    assert value(scraped, "fibosms_account_paused", code="14") == 1
    assert value(scraped, "fibosms_reconcile_difference") == 3  # none sent by us today
    assert value(scraped, "fibosms_alerts_open", kind="paused") == 1
    assert value(scraped, "fibosms_alerts_open", kind="mismatch") == 0
