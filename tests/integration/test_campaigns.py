"""The advertising rules on the real ledger (SQLite and PostgreSQL) and the sandbox gateway:
quiet hours, the daily cap, suppression (by hand and by code 7), cancelling a campaign.

The window is chosen around or away from the moment the test runs, and the claim is given a
later ``now`` to stand for the window opening: nothing waits for the clock.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from producer.enqueue import Producer
from tests.fixtures.recording import RecordingPublisher
from worker.campaigns import cancel, send_campaign
from worker.clock import now
from worker.gateway import FiboClient
from worker.ledger.claims import claim_many, finish_attempt
from worker.ledger.db import Database
from worker.ledger.models import Message, Suppression
from worker.ledger.suppressions import OPERATOR, add_suppressions
from worker.rules.marketing import VIETNAM, MarketingPolicy
from worker.sandbox import SandboxServer
from worker.sending import Result, process_batch, process_message
from worker.settings import Settings
from worker.states import Status, Transition

PHONE = "0912345678"
OTHER = "0987654321"


def window_around_now(hours: int = 2) -> str:
    """A window that is open now (Vietnam time), ``hours`` either side, clipped to the day."""
    local = now().astimezone(VIETNAM)
    start = max(0, local.hour - hours)
    end = min(24, local.hour + hours + 1)
    return f"{start:02d}:00-{end:02d}:00" if end < 24 else f"{start:02d}:00-24:00"


def window_away_from_now() -> tuple[str, int]:
    """A one-hour window that is closed now, and the hours until it opens."""
    local = now().astimezone(VIETNAM)
    opens = (local.hour + 3) % 24
    return f"{opens:02d}:00-{(opens + 1) % 24 or 24:02d}:00".replace("-00:00", "-24:00"), 3


@pytest.fixture
def rules_env(sandbox_env: dict[str, str]) -> dict[str, str]:
    return {**sandbox_env, "FIBOSMS_MARKETING_HOURS": window_around_now()}


def make_settings(env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**env, **extra})


def enqueue(s: Settings, db: Database, phone: str, kind: str = "marketing", **opts: object) -> int:
    producer = Producer(settings=s, db=db, publisher=RecordingPublisher())
    return producer.enqueue_sms(phone, f"Khuyen mai {kind}", kind=kind, **opts)


def row(db: Database, mid: int) -> Message:
    with db.sessions() as session:
        found = session.get(Message, mid)
        assert found is not None
        return found


def send_batch(s: Settings, db: Database, ids: list[int]) -> dict[int, Result]:
    with FiboClient(s) as client, ThreadPoolExecutor(4) as pool:
        return process_batch(
            ids, settings=s, db=db, client=client, publisher=RecordingPublisher(), executor=pool
        )


# -- quiet hours -----------------------------------------------------------------------------


def test_outside_the_window_a_marketing_message_is_held_not_attempted(
    database: Database, sandbox: SandboxServer, sandbox_env: dict[str, str]
) -> None:
    # Given a window that opens in three hours
    window, hours = window_away_from_now()
    s = make_settings(sandbox_env, FIBOSMS_MARKETING_HOURS=window)
    mid = enqueue(s, database, PHONE)
    otp = enqueue(s, database, OTHER, kind="otp")
    # When a worker gets it
    result = send_batch(s, database, [mid])
    # Then it is held: still queued, no attempt, no call, due when the window opens
    assert result[mid] is Result.SKIPPED
    held = row(database, mid)
    assert (held.status, held.hold_reason, held.attempts) == ("queued", "quiet_hours", 0)
    assert held.published_at is None
    local_due = held.next_attempt_at.astimezone(VIETNAM)
    assert local_due.hour == int(window[:2]) and local_due.minute == 0
    assert now() + timedelta(hours=hours - 1) < held.next_attempt_at
    assert sandbox.calls() == []
    # and the metrics count it as held
    from worker.metrics.ledger import LedgerCollector

    samples = {
        (sample.name, sample.labels.get("reason")): sample.value
        for family in LedgerCollector(s, database).collect()
        for sample in family.samples
    }
    assert samples[("fibosms_held_messages", "quiet_hours")] == 1
    assert samples[("fibosms_held_messages", "daily_cap")] == 0
    # while an OTP goes at any hour
    with FiboClient(s) as client:
        assert process_message(
            otp, settings=s, db=database, client=client, publisher=RecordingPublisher()
        ) is Result.SENT


def test_accepted_outside_the_window_it_is_recorded_held_and_not_published(
    database: Database, sandbox_env: dict[str, str]
) -> None:
    window, _ = window_away_from_now()
    s = make_settings(sandbox_env, FIBOSMS_MARKETING_HOURS=window)
    publisher = RecordingPublisher()
    producer = Producer(settings=s, db=database, publisher=publisher)
    ids = producer.enqueue_many([{"phone": f"09123457{n:02d}", "text": "Uu dai"} for n in range(3)])
    otp = producer.enqueue_sms(PHONE, "Ma 123456", kind="otp")
    # nothing of the campaign went to the broker; the OTP did
    assert publisher.ids == [otp]
    held = [row(database, i) for i in ids]
    assert {(r.status, r.hold_reason, r.published_at) for r in held} == {
        ("queued", "quiet_hours", None)
    }
    # spread behind one another from the opening, not all at its first second
    dues = [r.next_attempt_at for r in held]
    assert dues == sorted(dues) and len(set(dues)) == 3
    assert dues[0].astimezone(VIETNAM).hour == int(window[:2])


def test_when_the_window_opens_the_held_message_is_claimed(
    database: Database, sandbox_env: dict[str, str]
) -> None:
    window, _ = window_away_from_now()
    s = make_settings(sandbox_env, FIBOSMS_MARKETING_HOURS=window)
    ids = [enqueue(s, database, f"09123456{n:02d}") for n in range(5)]
    policy = MarketingPolicy.from_settings(s)
    with database.transaction() as session:
        assert claim_many(session, ids, now(), policy) == []
    dues = sorted(row(database, i).next_attempt_at for i in ids)
    # released in an even flow, not all at the opening second
    assert len(set(dues)) == 5
    # When the clock reaches the last one's due time, inside the window
    with database.transaction() as session:
        claimed = claim_many(session, ids, dues[-1], policy)
    # Then all are claimed, their hold cleared, one attempt each
    assert sorted(m.id for m in claimed) == sorted(ids)
    for i in ids:
        r = row(database, i)
        assert (r.status, r.hold_reason, r.attempts) == ("sending", None, 1)


def test_a_held_message_still_expires(database: Database, sandbox_env: dict[str, str]) -> None:
    window, _ = window_away_from_now()
    s = make_settings(sandbox_env, FIBOSMS_MARKETING_HOURS=window)
    expires = now() + timedelta(hours=1)
    mid = enqueue(s, database, PHONE, expires_at=expires)
    send_batch(s, database, [mid])
    held = row(database, mid)
    # the hold ends no later than the expiry, and then the message expires, unsent
    assert held.hold_reason == "quiet_hours" and held.next_attempt_at == expires
    with database.transaction() as session:
        assert claim_many(session, [mid], expires + timedelta(seconds=1)) == []
    from worker.ledger.claims import expire_if_due

    with database.transaction() as session:
        assert expire_if_due(session, mid, expires + timedelta(seconds=1))
    assert row(database, mid).status == "expired"


# -- the daily cap ---------------------------------------------------------------------------


def test_the_fourth_marketing_message_to_a_number_in_24_hours_is_held(
    database: Database, sandbox: SandboxServer, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env)
    # Given five marketing messages to one number and one to another
    ids = [enqueue(s, database, PHONE, idempotency_key=f"k{n}") for n in range(5)]
    other = enqueue(s, database, OTHER)
    # When one batch takes them all
    results = send_batch(s, database, [*ids, other])
    # Then three went to the number, the rest wait for the 24 hours to pass
    assert [results[i] for i in ids] == [Result.SENT] * 3 + [Result.SKIPPED] * 2
    assert results[other] is Result.SENT
    assert len([c for c in sandbox.calls() if c.phone and c.phone.endswith(PHONE[-9:])]) == 3
    for i in ids[3:]:
        r = row(database, i)
        assert (r.status, r.hold_reason, r.attempts, r.claims) == ("queued", "daily_cap", 0, 0)
        first_sent = row(database, ids[0]).sent_at
        assert first_sent is not None
        # (the slot was counted from the claim, a moment before the gateway's answer)
        assert abs(r.next_attempt_at - (first_sent + timedelta(hours=24))) < timedelta(seconds=5)
    # and when they come due again before then, they are held again
    assert send_batch(s, database, ids[3:]) == dict.fromkeys(ids[3:], Result.SKIPPED)


def test_a_send_older_than_24_hours_frees_a_slot(
    database: Database, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env, FIBOSMS_MARKETING_DAILY_CAP="1")
    policy = MarketingPolicy.from_settings(s)
    first, second = enqueue(s, database, PHONE, idempotency_key="a"), enqueue(
        s, database, PHONE, idempotency_key="b"
    )
    at = now()
    with database.transaction() as session:
        [m] = claim_many(session, [first], at, policy)
        finish_attempt(session, m.holder, Transition(Status.SENT, code=200), at)
    with database.transaction() as session:
        assert claim_many(session, [second], at, policy) == []
    assert row(database, second).hold_reason == "daily_cap"
    later = at + timedelta(hours=24, seconds=1)
    window_ok = dataclasses.replace(policy, window=MarketingPolicy.from_settings(
        make_settings(rules_env, FIBOSMS_MARKETING_HOURS="00:00-24:00")).window)
    with database.transaction() as session:
        assert [m.id for m in claim_many(session, [second], later, window_ok)] == [second]


# -- suppression -----------------------------------------------------------------------------


def test_code_7_lists_the_number_and_the_next_marketing_message_is_suppressed_unsent(
    database: Database, sandbox: SandboxServer, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env)
    sandbox.script(PHONE, [{"code": 7}])
    first = enqueue(s, database, PHONE, idempotency_key="one")
    assert send_batch(s, database, [first])[first] is Result.DEAD
    with database.sessions() as session:
        listed = session.get(Suppression, PHONE)
        assert listed is not None and listed.source == "gateway"
    calls = len(sandbox.calls())
    # When the next campaign reaches the number, it is suppressed at the door, never sent
    second = enqueue(s, database, PHONE, idempotency_key="two")
    assert row(database, second).status == "suppressed"
    send_batch(s, database, [second])
    assert len(sandbox.calls()) == calls
    # while an OTP to the same number still goes
    otp = enqueue(s, database, PHONE, kind="otp")
    with FiboClient(s) as client:
        assert process_message(
            otp, settings=s, db=database, client=client, publisher=RecordingPublisher()
        ) is Result.SENT


def test_a_number_listed_after_acceptance_is_suppressed_at_the_claim(
    database: Database, sandbox: SandboxServer, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env, FIBOSMS_SUPPRESS_KINDS="marketing,transactional")
    mid = enqueue(s, database, PHONE)
    txn = enqueue(s, database, PHONE, kind="transactional")
    otp = enqueue(s, database, PHONE, kind="otp")
    with database.transaction() as session:
        add_suppressions(session, [PHONE], reason="asked", source=OPERATOR, now=now())
    send_batch(s, database, [mid])
    with FiboClient(s) as client:
        for i in (txn, otp):
            process_message(
                i, settings=s, db=database, client=client, publisher=RecordingPublisher()
            )
    assert [row(database, i).status for i in (mid, txn, otp)] == [
        "suppressed", "suppressed", "sent"
    ]
    assert row(database, mid).attempts == 0
    assert len(sandbox.accepted()) == 1


# -- campaigns -------------------------------------------------------------------------------


def csv_of(phones: list[str]) -> bytes:
    return ("phone,name\n" + "".join(f"{p},Khach {n}\n" for n, p in enumerate(phones))).encode()


def test_cancel_stops_a_running_campaign_without_touching_what_is_in_flight(
    database: Database, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env)
    phones = [f"09123450{n:02d}" for n in range(6)]
    report = send_campaign(
        csv_of(phones), name="tet", template="Chuc mung {name}", settings=s, db=database,
        publisher=RecordingPublisher(),
    )
    assert report.accepted == 6
    with database.sessions() as session:
        ids = list(session.scalars(select(Message.id).where(Message.campaign == "tet")))
    # Given one message in flight
    with database.transaction() as session:
        [flying] = claim_many(session, ids[:1], now(), MarketingPolicy.from_settings(s))
    # When the campaign is cancelled
    assert cancel(database, "tet") == 5
    # Then the rest are cancelled, the one in flight is not, and its outcome still lands
    assert row(database, flying.id).status == "sending"
    assert {row(database, i).status for i in ids[1:]} == {"cancelled"}
    with database.transaction() as session:
        assert finish_attempt(session, flying.holder, Transition(Status.SENT, code=200), now())
    assert row(database, flying.id).status == "sent"
    # and a cancelled campaign's row that comes back from a retry is cancelled at the claim
    with database.transaction() as session:
        assert claim_many(session, ids[1:], now()) == []


def test_rerunning_an_import_accepts_nothing_new(
    database: Database, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env)
    data = csv_of([PHONE, OTHER, PHONE])
    first = send_campaign(data, name="c1", template="Hi {name}", settings=s, db=database,
                          publisher=RecordingPublisher())
    again = send_campaign(data, name="c1", template="Hi {name}", settings=s, db=database,
                          publisher=RecordingPublisher())
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (again.accepted, again.already) == (0, 2)
    # even with another text: what a run accepted stays as it was
    edited = send_campaign(data, name="c1", template="Hello {name}", settings=s, db=database,
                           publisher=RecordingPublisher())
    assert (edited.accepted, edited.already) == (0, 2)
    with database.sessions() as session:
        rows = list(session.scalars(select(Message).where(Message.campaign == "c1")))
    assert len(rows) == 2
    assert all(r.text.startswith("[QC] Hi Khach") for r in rows)
    # the key names the campaign but not the number
    assert all(PHONE not in (r.idempotency_key or "") for r in rows)


def test_a_campaign_sent_at_a_later_time_is_not_due_before_it(
    database: Database, rules_env: dict[str, str]
) -> None:
    s = make_settings(rules_env)
    at: datetime = now() + timedelta(hours=1)
    send_campaign(csv_of([PHONE]), name="later", template="x", settings=s, db=database,
                  publisher=RecordingPublisher(), send_at=at)
    with database.sessions() as session:
        [r] = session.scalars(select(Message).where(Message.campaign == "later"))
    assert r.next_attempt_at == at and r.published_at is None


def test_an_attempt_of_unknown_outcome_counts_toward_the_cap(
    database: Database, rules_env: dict[str, str]
) -> None:
    # Given a marketing message whose one attempt timed out after the request left
    s = make_settings(rules_env, FIBOSMS_MARKETING_DAILY_CAP="1")
    policy = MarketingPolicy.from_settings(s)
    first = enqueue(s, database, PHONE, idempotency_key="a")
    second = enqueue(s, database, PHONE, idempotency_key="b")
    with database.transaction() as session:
        [m] = claim_many(session, [first], now(), policy)
        dead = Transition(Status.DEAD, error="read timeout", ambiguous=True,
                          failure_class="ambiguous", meaning="outcome unknown")
        assert finish_attempt(session, m.holder, dead, now())
    # When the next one to the same number is claimed, Then it may have been the one: held
    with database.transaction() as session:
        assert claim_many(session, [second], now(), policy) == []
    assert row(database, second).hold_reason == "daily_cap"


def test_enqueue_many_with_a_campaign_makes_the_campaign_visible(
    database: Database, rules_env: dict[str, str]
) -> None:
    from worker.campaigns import list_campaigns, show_campaign

    s = make_settings(rules_env)
    producer = Producer(settings=s, db=database, publisher=RecordingPublisher())
    producer.enqueue_many([
        {"phone": PHONE, "text": "Uu dai", "campaign": "api-1"},
        {"phone": OTHER, "text": "Uu dai", "campaign": "api-1"},
    ])
    shown = show_campaign(database, "api-1")
    assert shown is not None and shown["counts"] == {"queued": 2}
    assert [c["campaign"] for c in list_campaigns(database)] == ["api-1"]
    assert cancel(database, "api-1") == 2


def test_a_campaign_started_at_21_50_sends_until_22_and_resumes_at_07(
    database: Database, rules_env: dict[str, str]
) -> None:
    # Given the decree's window and a clock the test controls (Vietnam = UTC+7)
    s = make_settings(rules_env, FIBOSMS_MARKETING_HOURS="07:00-22:00",
                      FIBOSMS_MARKETING_DAILY_CAP="0")
    policy = MarketingPolicy.from_settings(s)
    day = now().astimezone(VIETNAM).replace(hour=0, minute=0, second=0, microsecond=0)
    at_2150, at_2200 = day + timedelta(hours=21, minutes=50), day + timedelta(hours=22)
    ids = [enqueue(s, database, f"09123460{n:02d}") for n in range(4)]
    with database.transaction() as session:
        session.execute(
            Message.__table__.update().values(next_attempt_at=at_2150 - timedelta(minutes=1))
        )
    # When a worker claims two at 21:50, Then they go
    with database.transaction() as session:
        assert len(claim_many(session, ids[:2], at_2150, policy)) == 2
    # When the rest come up at 22:00, Then they are held until 07:00 the next morning
    with database.transaction() as session:
        assert claim_many(session, ids[2:], at_2200, policy) == []
    opening = day + timedelta(days=1, hours=7)
    dues = [row(database, i).next_attempt_at for i in ids[2:]]
    assert all(opening <= d < opening + timedelta(seconds=5) for d in dues)
    assert {row(database, i).hold_reason for i in ids[2:]} == {"quiet_hours"}
    # a minute before 07:00 nothing goes; from their due times they do
    with database.transaction() as session:
        assert claim_many(session, ids[2:], opening - timedelta(minutes=1), policy) == []
    with database.transaction() as session:
        assert len(claim_many(session, ids[2:], max(dues), policy)) == 2
