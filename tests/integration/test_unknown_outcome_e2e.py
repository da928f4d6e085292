"""A send whose outcome is unknown, end to end through the send path.

``process_message`` on a SQLite ledger, the sandbox over real HTTP, a recording publisher:
a 200 whose body cannot be read, and an answer still trickling in at the call's deadline,
are both counted as ambiguous attempts and follow the per-kind policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from producer.enqueue import Producer
from tests.fixtures.recording import RecordingPublisher
from tests.fixtures.services import clean_ledger
from worker.decide import AMBIGUOUS
from worker.gateway import FiboClient
from worker.kinds import Kind
from worker.ledger.db import Database
from worker.ledger.models import Failure, Message
from worker.sandbox import SandboxServer
from worker.sending import Result, process_message
from worker.settings import Settings

OTP_PHONE = "0912000001"
PROMO_PHONE = "0912000002"

FAULTS = {
    "200 with an HTML page": {"body": "<html><body>Service Unavailable</body></html>",
                              "status": 200},
    "200 with an empty body": {"body": "", "status": 200},
    "an answer trickling past the deadline": {"trickle": 0.1},
}


@pytest.fixture
def settings(sandbox_settings: Settings, sqlite_url: str) -> Settings:
    return dataclasses.replace(sandbox_settings, database_url=sqlite_url, call_deadline_seconds=1.5)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    clean_ledger(database)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[FiboClient]:
    with FiboClient(settings) as c:
        yield c


def row(db: Database, message_id: int) -> Message:
    with db.sessions() as session:
        found = session.get(Message, message_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_an_unknown_outcome_retries_an_otp_and_dead_letters_marketing(
    settings: Settings,
    db: Database,
    client: FiboClient,
    sandbox: SandboxServer,
    fault: dict[str, object],
) -> None:
    # Given an OTP and a marketing message, and a gateway answering both unreadably
    publisher = RecordingPublisher()
    producer = Producer(settings=settings, db=db, publisher=publisher)
    otp = producer.enqueue_sms(OTP_PHONE, "Ma OTP cua ban la 123456", kind=Kind.OTP.value)
    promo = producer.enqueue_sms(PROMO_PHONE, "Giam 50% hom nay", kind=Kind.MARKETING.value)
    sandbox.script(OTP_PHONE, [fault])
    sandbox.script(PROMO_PHONE, [fault])
    publisher.published.clear()

    # When each is attempted once
    results = [
        process_message(mid, settings=settings, db=db, client=client, publisher=publisher)
        for mid in (otp, promo)
    ]

    # Then both attempts are counted as unknown, and each kind follows its policy
    assert results == [Result.RETRYING, Result.DEAD]
    otp_row, promo_row = row(db, otp), row(db, promo)
    assert (otp_row.status, otp_row.attempts, otp_row.ambiguous_attempts) == ("retrying", 1, 1)
    assert (promo_row.status, promo_row.attempts, promo_row.ambiguous_attempts) == ("dead", 1, 1)
    # the OTP comes back after its backoff; the marketing message waits for a person
    assert [mid for mid, _, _ in publisher.published] == [otp]
    with db.sessions() as session:
        failures = list(session.scalars(select(Failure)))
    assert [(f.message_id, f.cls, f.code) for f in failures] == [(promo, AMBIGUOUS, None)]
    assert "outcome unknown" in failures[0].meaning
    # each was handed over once, and not repeated inside the client
    sends = [c for c in sandbox.calls() if c.operation == "SendMaskedSMS"]
    assert len(sends) == 2
