"""The ledger's conditional state changes and the sweep, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from producer.enqueue import Producer
from tests.fixtures.recording import RecordingPublisher
from worker.ledger.account import pause, resume
from worker.ledger.attempts import attempts_of
from worker.ledger.claims import (
    claim,
    expire_if_due,
    finish_attempt,
    finish_sent,
    give_back,
    publish_if_resumed,
    unpublish_unclaimed,
)
from worker.ledger.clock import database_now
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message, Status
from worker.rules.marketing import DEFAULT_POLICY, parse_window
from worker.settings import Settings
from worker.states import Transition
from worker.sweep import sweep

SETTINGS = Settings.from_env(
    {"FIBOSMS_SENDING_TIMEOUT_SECONDS": "60", "FIBOSMS_REPUBLISH_AFTER_SECONDS": "120"}
)


def now() -> datetime:
    return datetime.now(UTC)


ANY_HOUR = dataclasses.replace(DEFAULT_POLICY, window=parse_window("00:00-24:00"))


def new_message(db: Database, kind: str = "transactional", **options: object) -> int:
    producer = Producer(settings=SETTINGS, db=db, publisher=RecordingPublisher())
    return producer.enqueue_sms("0912345678", "Ma OTP 123456", kind=kind, **options)


def row(db: Database, message_id: int) -> Message:
    with db.sessions() as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


def test_a_row_is_claimed_once(database: Database) -> None:
    mid = new_message(database)
    with database.transaction() as s:
        first = claim(s, mid, now())
    with database.transaction() as s:
        second = claim(s, mid, now())
    assert first is not None and first.attempt == 1 and first.recipient == "0912345678"
    assert second is None
    assert row(database, mid).status == "sending"


def test_eight_threads_racing_for_one_row_claim_it_once(database: Database) -> None:
    mid = new_message(database)
    wins: list[object] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        with database.transaction() as s:
            got = claim(s, mid, now())
        if got is not None:
            wins.append(got)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert row(database, mid).attempts == 1


def test_a_row_not_yet_due_is_not_claimed(database: Database) -> None:
    mid = new_message(database, send_at=now() + timedelta(minutes=5))
    with database.transaction() as s:
        assert claim(s, mid, now()) is None
    assert row(database, mid).status == "queued"


def test_the_claim_judges_due_by_the_database_clock(database: Database) -> None:
    with database.sessions() as s:
        db_now = database_now(s)
    assert abs((db_now - now()).total_seconds()) < 1.0
    soon = new_message(database, send_at=db_now + timedelta(seconds=30))
    due = new_message(database)
    with database.transaction() as s:
        # no time given: the database's, by which one is due and the other is not
        assert claim(s, soon) is None
        assert claim(s, due) is not None
    assert row(database, soon).status == "queued"
    claimed_at = row(database, due).claimed_at
    assert claimed_at is not None and claimed_at >= db_now


def test_a_task_that_came_early_leaves_its_row_to_the_sweep(database: Database) -> None:
    mid = new_message(database)
    later = now() + timedelta(minutes=1)
    with database.transaction() as s:
        s.execute(update(Message).where(Message.id == mid).values(
            status="retrying", next_attempt_at=later, published_at=later))
        assert unpublish_unclaimed(s, [mid], now()) == []
    assert row(database, mid).published_at is None
    # not due: nothing to publish yet, paused or not
    with database.transaction() as s:
        assert publish_if_resumed(s, [mid], now()) == []


def test_a_row_whose_task_found_the_account_paused_is_published_once_resumed(
    database: Database,
) -> None:
    mid = new_message(database)
    queue = row(database, mid).queue
    assert row(database, mid).published_at is not None
    with database.transaction() as s:
        assert pause(s, code=14, reason="test", message_id=mid, now=now())
        assert unpublish_unclaimed(s, [mid], now()) == [mid]
    assert row(database, mid).published_at is None
    with database.transaction() as s:
        assert publish_if_resumed(s, [mid], now()) == []
    assert row(database, mid).published_at is None
    with database.transaction() as s:
        assert resume(s, by="test", now=now())
        assert publish_if_resumed(s, [mid], now()) == [(mid, queue)]
    assert row(database, mid).published_at is not None
    # published once: a second pass finds nothing left to publish
    with database.transaction() as s:
        assert publish_if_resumed(s, [mid], now()) == []


def test_an_expired_row_is_marked_expired_and_never_claimed(database: Database) -> None:
    mid = new_message(database, expires_at=now() + timedelta(seconds=1))
    later = now() + timedelta(seconds=2)
    with database.transaction() as s:
        assert expire_if_due(s, mid, later)
    with database.transaction() as s:
        assert claim(s, mid, later) is None
    assert row(database, mid).status == "expired"


def test_an_outcome_is_recorded_only_by_the_claim_holder(database: Database) -> None:
    mid = new_message(database)
    with database.transaction() as s:
        claimed = claim(s, mid, now())
    assert claimed is not None
    with database.transaction() as s:
        other = dataclasses.replace(claimed.holder, claim=claimed.claim + 1)
        assert not finish_attempt(s, other, Transition(Status.SENT, 200), now())
    with database.transaction() as s:
        # the refused outcome left no attempt row behind
        assert attempts_of(s, mid) == []
        assert finish_attempt(s, claimed.holder, Transition(Status.SENT, 200), now())
    m = row(database, mid)
    assert (m.status, m.last_code) == ("sent", 200) and m.sent_at is not None
    with database.sessions() as s:
        assert [(a.claim, a.status, a.code) for a in attempts_of(s, mid)] == [(1, "sent", 200)]


def test_several_sends_are_recorded_together_each_only_by_its_claim_holder(
    database: Database,
) -> None:
    ids = [new_message(database) for _ in range(4)]
    at = now()
    with database.transaction() as s:
        claimed = [claim(s, mid, at) for mid in ids]
    holders = [c.holder for c in claimed if c is not None]
    assert len(holders) == 4
    # the third row's claim has moved on (the sweep took it over, another worker holds it)
    stale = dataclasses.replace(holders[2], claim=holders[2].claim + 1)
    with database.transaction() as s:
        done = finish_sent(s, [holders[0], holders[1], stale, holders[3]], 200, at)
    assert done == {ids[0], ids[1], ids[3]}
    for mid in ids:
        m = row(database, mid)
        if mid == ids[2]:
            assert (m.status, m.sent_at) == ("sending", None)
        else:
            assert (m.status, m.last_code, m.sent_at, m.claimed_at) == ("sent", 200, at, None)
    with database.sessions() as s:
        history = attempts_of(s, ids[0])
        assert [(a.claim, a.attempt, a.status, a.code, a.ambiguous) for a in history] == [
            (1, 1, "sent", 200, False)
        ]
        assert attempts_of(s, ids[2]) == []
    with database.transaction() as s:  # recorded once: a second try changes nothing
        assert finish_sent(s, [holders[0], holders[1], holders[3]], 200, at) == set()
    with database.sessions() as s:
        assert len(attempts_of(s, ids[1])) == 1


def test_every_recorded_outcome_writes_one_attempt_row_with_its_claim(
    database: Database,
) -> None:
    mid = new_message(database)
    first_at = now()
    retried_at = first_at + timedelta(seconds=5)
    with database.transaction() as s:
        first = claim(s, mid, first_at)
        assert first is not None and first.claimed_at == first_at
        timed_out = Transition(
            Status.RETRYING, None, "read timeout after the request was sent",
            next_attempt_at=retried_at, ambiguous=True,
        )
        assert finish_attempt(s, first.holder, timed_out, retried_at)
    second_at = retried_at + timedelta(seconds=1)
    with database.transaction() as s:
        second = claim(s, mid, second_at)
        assert second is not None
        assert finish_attempt(s, second.holder, Transition(Status.SENT, 200), second_at)
    with database.sessions() as s:
        history = attempts_of(s, mid)
    assert [
        (a.attempt, a.claim, a.claimed_at, a.recorded_at, a.status, a.code, a.ambiguous,
         a.guessed, a.late, a.error)
        for a in history
    ] == [
        (1, 1, first_at, retried_at, "retrying", None, True, False, False,
         "read timeout after the request was sent"),
        (2, 2, second_at, second_at, "sent", 200, False, False, False, None),
    ]


def test_a_claim_given_back_without_a_call_writes_no_attempt_row(database: Database) -> None:
    mid = new_message(database)
    with database.transaction() as s:
        claimed = claim(s, mid, now())
        assert claimed is not None
        assert give_back(s, claimed.holder, now())
    with database.sessions() as s:
        assert attempts_of(s, mid) == []


def test_dead_writes_its_failure_row_in_the_same_transaction(database: Database) -> None:
    mid = new_message(database)
    with database.transaction() as s:
        claimed = claim(s, mid, now())
        assert claimed is not None
        finish_attempt(
            s, claimed.holder,
            Transition(Status.DEAD, 7, "FIBO code 7: subscriber refuses messages",
                       failure_class="permanent", meaning="subscriber refuses messages"),
            now(),
        )
    with database.sessions() as s:
        failures = s.scalars(select(Failure).where(Failure.message_id == mid)).all()
    assert [(f.code, f.cls, f.attempts, f.meaning) for f in failures] == [
        (7, "permanent", 1, "subscriber refuses messages")
    ]
    assert row(database, mid).status == "dead"


def test_sweep_recovers_a_row_stuck_in_sending_as_an_ambiguous_attempt(database: Database) -> None:
    otp = new_message(database, kind="otp")
    bulk = new_message(database, kind="marketing")
    for mid in (otp, bulk):
        with database.transaction() as s:
            # at any hour: this test is not about the marketing window
            assert claim(s, mid, now(), ANY_HOUR) is not None
    # Given both attempts began longer ago than the sending timeout
    with database.transaction() as s:
        s.execute(update(Message).values(claimed_at=now() - timedelta(seconds=61)))
    # When the sweep runs
    report = sweep(settings=SETTINGS, db=database, publisher=RecordingPublisher())
    # Then the otp is retried and the marketing message dead-lettered as outcome unknown
    assert report.recovered == 2
    o, b = row(database, otp), row(database, bulk)
    assert (o.status, o.ambiguous_attempts) == ("retrying", 1)
    assert (b.status, b.ambiguous_attempts) == ("dead", 1)
    with database.sessions() as s:
        f = s.scalars(select(Failure).where(Failure.message_id == bulk)).one()
    assert (f.cls, f.meaning) == ("ambiguous", "outcome unknown")
    # and each guess is the claim's attempt row, dated from the claim
    with database.sessions() as s:
        for mid, status in ((otp, "retrying"), (bulk, "dead")):
            [guess] = attempts_of(s, mid)
            assert (guess.claim, guess.status, guess.ambiguous, guess.guessed, guess.late) == (
                1, status, True, True, False
            )
            assert guess.recorded_at - guess.claimed_at >= timedelta(seconds=60)


def test_a_row_still_in_its_sending_window_is_left_alone(database: Database) -> None:
    mid = new_message(database)
    with database.transaction() as s:
        assert claim(s, mid, now()) is not None
    assert sweep(settings=SETTINGS, db=database, publisher=RecordingPublisher()).recovered == 0
    assert row(database, mid).status == "sending"


def test_sweep_publishes_due_rows_the_broker_never_got(database: Database) -> None:
    failing = Producer(settings=SETTINGS, db=database, publisher=RecordingPublisher(fail=True))
    lost = failing.enqueue_sms("0912345678", "hello", kind="otp")
    assert row(database, lost).published_at is None
    in_flight = new_message(database)  # published just now: not the sweep's business
    publisher = RecordingPublisher()
    report = sweep(settings=SETTINGS, db=database, publisher=publisher)
    assert publisher.published == [(lost, "urgent", None)]
    assert report.published == 1
    assert in_flight not in publisher.ids


def test_sweep_publishes_again_what_was_published_long_ago_and_never_claimed(
    database: Database,
) -> None:
    mid = new_message(database, kind="marketing")
    with database.transaction() as s:
        s.execute(update(Message).values(published_at=now() - timedelta(seconds=121)))
    publisher = RecordingPublisher()
    sweep(settings=SETTINGS, db=database, publisher=publisher)
    assert publisher.published == [(mid, "bulk", None)]


def test_concurrent_sweeps_publish_each_row_once(database: Database) -> None:
    failing = Producer(settings=SETTINGS, db=database, publisher=RecordingPublisher(fail=True))
    ids = [failing.enqueue_sms("0912345678", f"message {i}") for i in range(200)]
    publisher = RecordingPublisher()
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        sweep(settings=SETTINGS, db=database, publisher=publisher)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(publisher.ids) == sorted(ids)


def test_a_failed_sweep_publish_is_left_for_the_next_pass(database: Database) -> None:
    failing = Producer(settings=SETTINGS, db=database, publisher=RecordingPublisher(fail=True))
    mid = failing.enqueue_sms("0912345678", "hello")
    report = sweep(settings=SETTINGS, db=database, publisher=RecordingPublisher(fail=True))
    assert (report.published, report.publish_failed) == (0, 1)
    assert row(database, mid).published_at is None
    publisher = RecordingPublisher()
    sweep(settings=SETTINGS, db=database, publisher=publisher)
    assert publisher.ids == [mid]
