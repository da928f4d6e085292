"""A randomised race: slow gateway calls, a sweep that takes them over, replays, two workers.

Two real Celery workers (threads pool) on PostgreSQL and Redis send 150 messages of every
kind to a sandbox that answers each call after a random delay, some beyond the read
timeout. Meanwhile the test runs the sweep with its clock moved forward, so that it takes
over attempts that are merely slow (exactly what a worker cut off from the network looks
like), and an operator replays every dead letter. The gateway accepts every call it sees,
so for every message the calls it accepted must be accounted for by the ledger: the one
that ended ``sent`` plus each recorded ambiguous attempt, no more; and the attempt history
holds a row for exactly as many distinct claims as the gateway accepted calls.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import distinct, func, select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack, wait_for
from worker.clock import now
from worker.ledger.models import Attempt, Failure, Message
from worker.replay import replay
from worker.sweep import sweep

pytestmark = pytest.mark.system

MESSAGES = 150
KINDS = ("otp", "transactional", "marketing")
#: seconds the sandbox waits before answering; the read timeout is 1.5 s
DELAYS = (0.0, 0.0, 0.1, 0.4, 0.9, 1.2, 2.0)
#: the sweep's clock runs ahead so that an attempt in flight longer than this is taken over
TAKEOVER_AFTER_SECONDS = 0.7
CHAOS_SECONDS = 12.0


@pytest.mark.timeout(200)
def test_every_call_the_gateway_accepted_is_accounted_for_in_the_ledger(
    make_stack: Callable[..., Stack],
    pg_url: str,
    redis_url: str,
    sandbox: Any,
    figures: dict[str, Any],
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    figures["seed"] = seed
    stack = make_stack(
        pg_url,
        redis_url,
        FIBOSMS_READ_TIMEOUT_SECONDS="1.5",
        FIBOSMS_SENDING_TIMEOUT_SECONDS="10",
        FIBOSMS_MAX_ATTEMPTS="6",
        FIBOSMS_RETRY_BASE_SECONDS="0.2",
        FIBOSMS_RETRY_MAX_SECONDS="0.5",
        FIBOSMS_BULK_BATCH_SIZE="5",
    )
    clean_ledger(stack.db)
    phones = [f"0913{i:06d}" for i in range(MESSAGES)]
    for phone in phones:
        sandbox.script(phone, [{"code": 200, "delay": rng.choice(DELAYS)} for _ in range(4)])
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    ids = [
        stack.producer.enqueue_sms(phone, f"Ma {i:06d}", kind=rng.choice(KINDS))
        for i, phone in enumerate(phones)
    ]

    # Given a sweep that takes over slow attempts and an operator replaying dead letters
    stop = threading.Event()
    counts: Counter[str] = Counter()

    def chaos() -> None:
        ahead = timedelta(seconds=stack.settings.sending_timeout_seconds - TAKEOVER_AFTER_SECONDS)
        while not stop.wait(rng.uniform(0.1, 0.4)):
            report = sweep(
                settings=stack.settings, db=stack.db, publisher=stack.publisher,
                now=now() + ahead,
            )
            counts["taken over"] += report.recovered
            if rng.random() < 0.5:
                with stack.db.sessions() as session:
                    dead = list(session.scalars(
                        select(Message.id).where(Message.status == "dead")
                    ))
                counts["replayed"] += len(replay(stack.db, stack.publisher, message_ids=dead))

    thread = threading.Thread(target=chaos)
    thread.start()
    time.sleep(CHAOS_SECONDS)
    stop.set()
    thread.join()

    # When the storm is over and the ordinary sweep lets everything settle
    def settled() -> bool:
        sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher)
        with stack.db.sessions() as session:
            moving = session.scalar(
                select(Message.id).where(Message.status.in_(("queued", "sending", "retrying")))
                .limit(1)
            )
        return moving is None

    wait_for(settled, timeout=90, every=0.5)
    stack.stop_workers()

    # Then for every message, the gateway's accepted calls = its sent + its ambiguous attempts
    accepted = Counter(m.phone for m in sandbox.accepted())
    with stack.db.sessions() as session:
        rows = {m.recipient: m for m in session.scalars(select(Message))}
        open_failures = set(session.scalars(
            select(Failure.message_id).where(Failure.replayed_at.is_(None))
        ))
        claims_recorded = dict(session.execute(
            select(Message.recipient, func.count(distinct(Attempt.claim)))
            .join(Attempt, Attempt.message_id == Message.id)
            .group_by(Message.recipient)
        ).all())
    wrong = {
        phone: (accepted[phone], m.status, m.ambiguous_attempts)
        for phone, m in rows.items()
        if accepted[phone] != (1 if m.status == "sent" else 0) + m.ambiguous_attempts
    }
    unrecorded = {
        phone: (accepted[phone], claims_recorded.get(phone, 0))
        for phone in rows
        if accepted[phone] != claims_recorded.get(phone, 0)
    }
    statuses = Counter(m.status for m in rows.values())
    figures.update(
        messages=len(ids),
        statuses=dict(statuses),
        calls_accepted=sum(accepted.values()),
        ambiguous_recorded=sum(m.ambiguous_attempts for m in rows.values()),
        claims_with_attempt_rows=sum(claims_recorded.values()),
        **counts,
    )
    assert len(rows) == MESSAGES
    assert wrong == {}, f"seed {seed}: accepted ≠ sent + ambiguous for {wrong}"
    # and every accepted call is one claim in the attempt history, none missing, none extra
    assert unrecorded == {}, f"seed {seed}: accepted ≠ claims with a row for {unrecorded}"
    # every message ends sent, or dead with an open dead letter saying why
    assert set(statuses) <= {"sent", "dead"}
    assert {m.id for m in rows.values() if m.status == "dead"} <= open_failures
    # and the storm did what it was meant to: attempts were taken over and replayed
    assert counts["taken over"] > 0 and counts["replayed"] > 0
