"""The send attempt below the integration tier: the embedded SQLite ledger, a gateway that
answers from a script, a publisher that records. No service, no network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from producer.enqueue import Producer
from tests.fixtures.recording import RecordingPublisher
from worker.errors import AmbiguousError, FiboError, error_for_code
from worker.ledger.db import Database
from worker.ledger.migrate import upgrade
from worker.ledger.models import Failure, Message
from worker.sending import Gate, Result, process_message
from worker.settings import Settings

SETTINGS = Settings.from_env({"FIBOSMS_MAX_ATTEMPTS": "3"})


class ScriptedGateway:
    """Answers each call with the next item: a success code or an error to raise."""

    def __init__(self, *answers: int | FiboError) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    def send(self, phone: str, text: str, *, sender: str | None = None,
             service_type: int = 0) -> object:
        self.calls.append(phone)
        answer = self.answers.pop(0)
        if isinstance(answer, FiboError):
            raise answer
        return type("Receipt", (), {"code": answer})()


class BrokenLimiter:
    def acquire(
        self, cost: float, *, urgent: bool, timeout: float, sleep: object = None
    ) -> bool:
        raise ConnectionError("the limiter's Redis is down")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def enqueue(db: Database, kind: str = "otp") -> int:
    producer = Producer(settings=SETTINGS, db=db, publisher=RecordingPublisher())
    return producer.enqueue_sms("0912345678", "Ma OTP 123456", kind=kind)


def attempt(db: Database, mid: int, gateway: ScriptedGateway, gate: Gate | None = None) -> Result:
    return process_message(
        mid, settings=SETTINGS, db=db, client=gateway, publisher=RecordingPublisher(), gate=gate
    )


def row(db: Database, mid: int) -> Message:
    with db.sessions() as session:
        found = session.get(Message, mid)
        assert found is not None
        return found


def test_a_success_is_recorded_as_sent_with_its_code(db: Database) -> None:
    mid = enqueue(db)
    gateway = ScriptedGateway(200)
    assert attempt(db, mid, gateway) is Result.SENT
    m = row(db, mid)
    assert (m.status, m.attempts, m.last_code) == ("sent", 1, 200)
    assert gateway.calls == ["0912345678"]


def test_a_second_task_for_a_sent_message_calls_nobody(db: Database) -> None:
    mid = enqueue(db)
    gateway = ScriptedGateway(200)
    attempt(db, mid, gateway)
    assert attempt(db, mid, gateway) is Result.SKIPPED
    assert len(gateway.calls) == 1


def test_a_transient_code_is_retried_and_a_permanent_one_dead_lettered(db: Database) -> None:
    mid = enqueue(db)
    gateway = ScriptedGateway(error_for_code(13), error_for_code(10))
    assert attempt(db, mid, gateway) is Result.RETRYING
    assert row(db, mid).next_attempt_at is not None
    # the retry is due later; pretend it is due now
    with db.transaction() as session:
        session.get(Message, mid).next_attempt_at = row(db, mid).created_at  # type: ignore[union-attr]
    assert attempt(db, mid, gateway) is Result.DEAD
    with db.sessions() as session:
        [failure] = session.scalars(select(Failure).where(Failure.message_id == mid)).all()
    assert (failure.code, failure.cls, failure.attempts) == (10, "permanent", 2)


def test_an_unknown_outcome_of_a_marketing_message_is_dead_as_ambiguous(db: Database) -> None:
    mid = enqueue(db, kind="marketing")
    assert attempt(db, mid, ScriptedGateway(AmbiguousError("read timeout"))) is Result.DEAD
    m = row(db, mid)
    assert (m.status, m.ambiguous_attempts) == ("dead", 1)


def test_a_limiter_that_fails_before_the_call_gives_the_claim_back_uncounted(
    db: Database,
) -> None:
    # Given a rate limiter whose Redis is down
    mid = enqueue(db, kind="transactional")
    gateway = ScriptedGateway(200)
    # When a worker claims the message
    result = attempt(db, mid, gateway, gate=Gate(limiter=BrokenLimiter()))
    # Then nothing was called, nothing counted, and the row waits for the sweep
    assert result is Result.DEFERRED
    m = row(db, mid)
    assert gateway.calls == []
    assert (m.status, m.attempts, m.ambiguous_attempts, m.published_at) == ("queued", 0, 0, None)
    # and the next claim holds a new token: the given-back one is never reused
    assert m.claims == 1
    assert attempt(db, mid, gateway) is Result.SENT
    assert row(db, mid).claims == 2
