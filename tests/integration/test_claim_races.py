"""Races between a slow call, the sweep and replay: the claim token and the late answer.

Real parts: the sandbox gateway over HTTP (scripted to answer slowly), the ledger on SQLite
and PostgreSQL, the send attempt and the sweep as the workers run them. The sweep's clock is
moved past the sending timeout instead of waiting it out.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from producer.enqueue import Producer
from tests.fixtures.recording import RecordingPublisher
from worker.clock import now
from worker.gateway import FiboClient
from worker.ledger.attempts import attempts_of
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message
from worker.replay import replay
from worker.sending import Result, process_batch, process_message
from worker.settings import Settings
from worker.sweep import sweep

PHONE = "0912345678"


@pytest.fixture
def settings(sandbox_env: dict[str, str]) -> Settings:
    # a read timeout long enough for the scripted slow answers
    return Settings.from_env({**sandbox_env, "FIBOSMS_READ_TIMEOUT_SECONDS": "8"})


def enqueue(settings: Settings, db: Database, kind: str, phone: str = PHONE) -> int:
    producer = Producer(settings=settings, db=db, publisher=RecordingPublisher())
    return producer.enqueue_sms(phone, f"Khuyen mai {kind}", kind=kind)


def row(db: Database, mid: int) -> Message:
    with db.sessions() as session:
        found = session.get(Message, mid)
        assert found is not None
        return found


def open_failures(db: Database, mid: int) -> list[Failure]:
    with db.sessions() as session:
        return list(
            session.scalars(
                select(Failure).where(Failure.message_id == mid, Failure.replayed_at.is_(None))
            )
        )


def history(db: Database, mid: int) -> list[tuple[int, str, bool, bool, bool]]:
    """The attempt rows: (claim, status, ambiguous, guessed, late), in recording order."""
    with db.sessions() as session:
        return [
            (a.claim, a.status, a.ambiguous, a.guessed, a.late)
            for a in attempts_of(session, mid)
        ]


def in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", fn()))
    thread.start()
    return thread, out


def wait_until_sending(db: Database, mid: int) -> None:
    for _ in range(200):
        if row(db, mid).status == "sending":
            return
        threading.Event().wait(0.02)
    raise AssertionError("the slow attempt never claimed the row")


def test_a_worker_inside_an_old_claim_cannot_record_onto_the_claim_after_a_replay(
    database: Database, sandbox: Any, settings: Settings
) -> None:
    # Given a marketing message whose first call the gateway answers slowly
    mid = enqueue(settings, database, "marketing")
    sandbox.script(PHONE, [{"code": 200, "delay": 3}, {"code": 200}])
    publisher = RecordingPublisher()
    with FiboClient(settings) as slow_client, FiboClient(settings) as client:
        slow, out = in_background(
            lambda: process_message(
                mid, settings=settings, db=database, client=slow_client, publisher=publisher
            )
        )
        wait_until_sending(database, mid)
        # When the sweep takes the stalled attempt over (marketing: dead, outcome unknown),
        # an operator replays it, and another worker sends it at once
        later = now() + timedelta(seconds=settings.sending_timeout_seconds + 1)
        assert sweep(settings=settings, db=database, publisher=publisher, now=later).recovered == 1
        assert row(database, mid).status == "dead"
        assert replay(database, publisher, message_ids=[mid]) == [mid]
        second = process_message(
            mid, settings=settings, db=database, client=client, publisher=publisher
        )
        slow.join(timeout=15)
    # Then the second worker's outcome stands and the first one's is refused
    assert second is Result.SENT
    assert out["result"] is Result.LOST_CLAIM
    # and the row shows both calls that went out; the gateway took two, which one
    # ambiguous attempt accounts for (accepted sends = 1 + ambiguous attempts)
    m = row(database, mid)
    accepted = sandbox.accepted()
    assert (m.status, m.attempts, m.claims, m.ambiguous_attempts) == ("sent", 2, 2, 1)
    assert len(accepted) == 2 == 1 + m.ambiguous_attempts
    # the history has a row for each claim that made a call: the sweep's guess for the
    # first (the refused late outcome wrote nothing), the answer for the second
    assert history(database, mid) == [
        (1, "dead", True, True, False),
        (2, "sent", False, False, False),
    ]


def test_a_late_definite_answer_replaces_the_sweeps_guess(
    database: Database, sandbox: Any, settings: Settings
) -> None:
    # Given a marketing message whose call is answered (200) only after the sweep has
    # taken the attempt over and dead-lettered it as "outcome unknown"
    mid = enqueue(settings, database, "marketing")
    sandbox.script(PHONE, [{"code": 200, "delay": 2}])
    publisher = RecordingPublisher()
    with FiboClient(settings) as client:
        slow, out = in_background(
            lambda: process_message(
                mid, settings=settings, db=database, client=client, publisher=publisher
            )
        )
        wait_until_sending(database, mid)
        later = now() + timedelta(seconds=settings.sending_timeout_seconds + 1)
        sweep(settings=settings, db=database, publisher=publisher, now=later)
        guessed = row(database, mid)
        assert (guessed.status, guessed.ambiguous_attempts) == ("dead", 1)
        assert len(open_failures(database, mid)) == 1
        slow.join(timeout=15)
    # Then the gateway's answer wins: sent, the guess's ambiguous attempt taken back, and
    # no dead letter left inviting a replay
    assert out["result"] is Result.SENT
    m = row(database, mid)
    assert (m.status, m.attempts, m.ambiguous_attempts, m.guessed_claim) == ("sent", 1, 0, None)
    assert open_failures(database, mid) == []
    assert len(sandbox.accepted()) == 1
    # and the history keeps both: the guess, then the late answer, for the same claim
    assert history(database, mid) == [
        (1, "dead", True, True, False),
        (1, "sent", False, False, True),
    ]
    with database.sessions() as session:
        guess, answer = attempts_of(session, mid)
    assert guess.claimed_at == answer.claimed_at


def test_a_bulk_batch_records_each_outcome_as_its_call_ends(
    database: Database, sandbox: Any, settings: Settings
) -> None:
    # Given a batch of marketing messages, one of which the gateway answers slowly
    fast = [enqueue(settings, database, "marketing", phone=f"09123{i:05d}") for i in range(4)]
    slow_id = enqueue(settings, database, "marketing", phone="0987654321")
    sandbox.script("0987654321", [{"code": 200, "delay": 3}])
    publisher = RecordingPublisher()
    from concurrent.futures import ThreadPoolExecutor

    with FiboClient(settings) as client, ThreadPoolExecutor(4) as executor:
        batch, out = in_background(
            lambda: process_batch(
                [*fast, slow_id],
                settings=settings,
                db=database,
                client=client,
                publisher=publisher,
                executor=executor,
            )
        )
        # When the fast calls have ended but the slow one has not
        wait_until_sending(database, slow_id)
        for _ in range(100):
            if all(row(database, mid).status == "sent" for mid in fast):
                break
            threading.Event().wait(0.05)
        # Then the fast ones are already recorded while the slow one is still in flight
        assert [row(database, mid).status for mid in fast] == ["sent"] * 4
        assert row(database, slow_id).status == "sending"
        batch.join(timeout=15)
    assert out["result"] == dict.fromkeys([*fast, slow_id], Result.SENT)
    for mid in [*fast, slow_id]:
        assert history(database, mid) == [(1, "sent", False, False, False)]
