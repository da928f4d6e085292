"""The account watch against the sandbox: polls, reconciliation, alerts, pause and resume."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.fixtures.stack import Stack, statuses, wait_for
from worker.gateway import FiboClient
from worker.ledger.account import current_pause
from worker.ledger.models import Alert, BalancePoll, Message, TotalsPoll
from worker.sending import process_message
from worker.watch.alerts import deliver_alerts
from worker.watch.control import resume_sending
from worker.watch.days import vietnam_day
from worker.watch.polls import poll_balance, poll_totals
from worker.watch.reconcile import local_counts
from worker.watch.report import day_report

ICT = timezone(timedelta(hours=7))


@pytest.fixture
def stack(make_stack: Callable[..., Stack], db_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(db_url, redis_url, FIBOSMS_LOW_BALANCE="100")
    clean_ledger(s.db)
    return s


@pytest.fixture
def client(stack: Stack) -> Iterator[FiboClient]:
    c = FiboClient(stack.settings, read_attempts=1)
    yield c
    c.close()


def now() -> datetime:
    return datetime.now(UTC)


def open_alerts(stack: Stack, kind: str) -> list[Alert]:
    with stack.db.sessions() as s:
        return list(s.scalars(select(Alert).where(Alert.kind == kind)))


def send_now(stack: Stack, client: FiboClient, mid: int) -> str:
    return process_message(mid, settings=stack.settings, db=stack.db, client=client,
                           publisher=stack.publisher).value


class Webhook:
    """A real HTTP endpoint that records the JSON posted to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def test_a_balance_poll_is_stored(stack: Stack, client: FiboClient, sandbox: Any) -> None:
    sandbox.set_balance(5000)
    got = poll_balance(settings=stack.settings, db=stack.db, client=client, now=now())
    assert got is not None and got[0] == 5000
    with stack.db.sessions() as s:
        assert [b for (b,) in s.execute(select(BalancePoll.balance))] == [5000]


def test_a_low_balance_alerts_once_with_an_estimate_and_reaches_the_webhook_once(
    make_stack: Callable[..., Stack], db_url: str, redis_url: str, sandbox: Any, webhook: Webhook
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(db_url, redis_url, FIBOSMS_LOW_BALANCE="100",
                       FIBOSMS_ALERT_WEBHOOK_URL=webhook.url)
    clean_ledger(stack.db)
    client = FiboClient(stack.settings, read_attempts=1)
    start = now() - timedelta(hours=3)
    # Given a balance falling 30 an hour, below the threshold of 100
    for hour, balance in enumerate([150, 120, 90, 60]):
        sandbox.set_balance(balance)
        poll_balance(settings=stack.settings, db=stack.db, client=client,
                     now=start + timedelta(hours=hour))
        deliver_alerts(stack.settings, stack.db, now())
    # Then one alert, raised at the first poll below 100, with how long the balance lasts
    [alert] = open_alerts(stack, "low_balance")
    assert alert.cleared_at is None
    assert "balance 90" in alert.message and "30.0/hour" in alert.message
    assert "3.0 hours" in alert.message
    assert [r["kind"] for r in webhook.received] == ["low_balance"]
    # When the account is topped up, the alert clears, and a new fall alerts again
    sandbox.set_balance(1000)
    poll_balance(settings=stack.settings, db=stack.db, client=client, now=now())
    assert open_alerts(stack, "low_balance")[0].cleared_at is not None
    client.close()


def test_totals_are_stored_for_the_vietnam_day_and_reconcile(
    stack: Stack, client: FiboClient, sandbox: Any
) -> None:
    ids = [stack.producer.enqueue_sms("0912345678", f"m{i}") for i in range(3)]
    for mid in ids:
        assert send_now(stack, client, mid) == "sent"
    check = poll_totals(settings=stack.settings, db=stack.db, client=client, now=now())
    assert check is not None
    assert (check.gateway_success, check.sent_at_poll, check.difference, check.mismatch) == (
        3, 3, 0, False
    )
    with stack.db.sessions() as s:
        [day] = list(s.scalars(select(TotalsPoll.day)))
    assert day == vietnam_day(now())
    assert open_alerts(stack, "mismatch") == []


def test_a_day_that_does_not_add_up_is_recorded_reported_and_alerted_once(
    stack: Stack, client: FiboClient, sandbox: Any
) -> None:
    mid = stack.producer.enqueue_sms("0912345678", "ours")
    send_now(stack, client, mid)
    # Given two messages the gateway accepted that our ledger never sent
    client.send("0987654321", "not ours")
    client.send("0987654321", "not ours either")
    for _ in range(3):
        check = poll_totals(settings=stack.settings, db=stack.db, client=client, now=now())
        assert check is not None and check.mismatch and check.difference == 2
    [alert] = open_alerts(stack, "mismatch")
    assert "accepted 3" in alert.message and "sent 1" in alert.message
    with stack.db.sessions() as s:
        report = day_report(s, vietnam_day(now()), tolerance=0)
    assert report["mismatch"] is True
    assert report["gateway"]["success"] == 3 and report["local"]["sent"] == 1
    assert report["difference"] == 2
    assert [a["kind"] for a in report["alerts"]] == ["mismatch"]


def test_messages_either_side_of_vietnam_midnight_count_on_their_own_days(stack: Stack) -> None:
    a = stack.producer.enqueue_sms("0912345678", "late")
    b = stack.producer.enqueue_sms("0912345678", "early")
    late = datetime(2026, 11, 27, 23, 59, 30, tzinfo=ICT)
    early = datetime(2026, 11, 28, 0, 0, 30, tzinfo=ICT)
    with stack.db.transaction() as s:
        s.execute(update(Message).where(Message.id == a).values(status="sent", sent_at=late))
        s.execute(update(Message).where(Message.id == b).values(status="sent", sent_at=early))
    with stack.db.sessions() as s:
        assert local_counts(s, late.date()).sent == 1
        assert local_counts(s, early.date()).sent == 1
        assert local_counts(s, early.date() + timedelta(days=1)).sent == 0


def test_an_empty_balance_pauses_dead_letters_one_message_and_a_top_up_resumes(
    stack: Stack, client: FiboClient, sandbox: Any
) -> None:
    # Given an empty account and a worker with four threads
    sandbox.set_balance(0)
    stack.start_worker(concurrency=4)
    ids = [stack.producer.enqueue_sms(f"09123{i:05d}", f"m{i}") for i in range(8)]
    wait_for(lambda: current_pause_of(stack).paused, timeout=20)
    wait_for(lambda: sorted(statuses(stack.db, ids).values()).count("dead") == 1, timeout=20)
    # every task has been consumed and found the account paused
    wait_for(lambda: "sending" not in statuses(stack.db, ids).values(), timeout=20)
    states = statuses(stack.db, ids)
    assert sorted(states.values()).count("dead") == 1, states
    with stack.db.sessions() as s:
        waiting = list(s.execute(select(Message.status, Message.attempts)
                                 .where(Message.status != "dead")))
    # none of the others is dead-lettered, and none burnt an attempt
    assert len(waiting) == 7 and all(a == 0 for _, a in waiting), waiting
    pause = current_pause_of(stack)
    assert (pause.code, pause.resumes_by_itself) == (14, True)
    assert [a.kind for a in open_alerts(stack, "paused")] == ["paused"]
    with stack.db.sessions() as s:
        assert day_report(s, vietnam_day(now()), tolerance=0)["account"]["paused"] is True
    # When the account is topped up and the balance is polled
    sandbox.set_balance(100)
    got = poll_balance(settings=stack.settings, db=stack.db, client=client, now=now(),
                       publisher=stack.publisher)
    # Then sending resumes by itself and the seven are sent
    assert got is not None and got[1] is True
    wait_for(lambda: sorted(statuses(stack.db, ids).values()) == ["dead"] + ["sent"] * 7,
             timeout=30)
    assert len(sandbox.accepted()) == 7
    assert open_alerts(stack, "paused")[0].cleared_at is not None


def current_pause_of(stack: Stack) -> Any:
    with stack.db.sessions() as s:
        return current_pause(s)


def test_a_wrong_password_pauses_until_resumed_by_command(
    stack: Stack, client: FiboClient, sandbox: Any
) -> None:
    sandbox.script(None, [{"code": 3}])
    first = stack.producer.enqueue_sms("0912345678", "first")
    assert send_now(stack, client, first) == "dead"
    later = stack.producer.enqueue_sms("0912345679", "later")
    assert send_now(stack, client, later) == "paused"
    # a balance poll that sees money does not resume a pause for code 3
    got = poll_balance(settings=stack.settings, db=stack.db, client=client, now=now())
    assert got is not None and got[1] is False
    assert current_pause_of(stack).code == 3
    was_paused, published = resume_sending(settings=stack.settings, db=stack.db,
                                           publisher=stack.publisher)
    assert (was_paused, published) == (True, 1)
    assert send_now(stack, client, later) == "sent"
    with stack.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Message)
                        .where(Message.status == "dead")) == 1


def test_a_real_beat_polls_and_a_second_beat_stands_by(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, sandbox: Any
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url, FIBOSMS_BALANCE_POLL_SECONDS="1",
                       FIBOSMS_TOTALS_POLL_SECONDS="1", FIBOSMS_SWEEP_SECONDS="1")
    clean_ledger(stack.db)
    stack.start_worker()
    first = stack.start_beat(name="beat-1")
    second = stack.start_beat(name="beat-2")

    def polls() -> tuple[int, int]:
        with stack.db.sessions() as s:
            return (int(s.scalar(select(func.count()).select_from(BalancePoll)) or 0),
                    int(s.scalar(select(func.count()).select_from(TotalsPoll)) or 0))

    wait_for(lambda: min(polls()) >= 3, timeout=30)
    logs = [first.read_text(), second.read_text()]
    sending = [log.count("Sending due task poll-balance") for log in logs]
    # exactly one beat schedules; the other stands by
    assert sorted(sending)[0] == 0 and sorted(sending)[1] >= 3, sending
    assert any("another beat holds the lock" in log for log in logs)
