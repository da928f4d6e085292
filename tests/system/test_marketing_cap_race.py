"""The daily cap under many workers: no number gets a fourth advertising SMS in 24 hours.

Four real Celery workers (two with a prefork pool of four processes, two with eight
threads: two machines' worth) on PostgreSQL and Redis take small ``send_batch`` tasks for
ten messages to each of 24 numbers, every id published three times over so that
claims of the same number collide, while the sandbox answers after a random delay. Each
number must end with exactly the cap sent and the rest held (``daily_cap``), unattempted.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack, wait_for
from worker.ledger.models import Message
from worker.sweep import sweep

pytestmark = pytest.mark.system

NUMBERS = 24
PER_NUMBER = 10
CAP = 3
DELAYS = (0.0, 0.05, 0.2, 0.5)


@pytest.mark.timeout(240)
def test_no_number_gets_more_than_the_cap_whatever_the_interleaving(
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
        FIBOSMS_MARKETING_HOURS="00:00-24:00",
        FIBOSMS_MARKETING_DAILY_CAP=str(CAP),
        FIBOSMS_BULK_BATCH_SIZE="3",
        FIBOSMS_READ_TIMEOUT_SECONDS="2",
    )
    clean_ledger(stack.db)
    phones = [f"0914{i:06d}" for i in range(NUMBERS)]
    for phone in phones:
        sandbox.script(phone, [{"code": 200, "delay": rng.choice(DELAYS)} for _ in range(CAP * 2)])
    # Given the messages accepted in a random order, before any worker runs
    jobs = [(p, n) for p in phones for n in range(PER_NUMBER)]
    rng.shuffle(jobs)
    ids = stack.producer.enqueue_many(
        [{"phone": p, "text": f"Uu dai {n}", "idempotency_key": f"{p}-{n}"} for p, n in jobs]
    )
    # and each id published twice more, in other batches, so claims collide
    for _ in range(2):
        again = ids[:]
        rng.shuffle(again)
        stack.publisher.publish([(i, "bulk") for i in again])
    # When four workers take them at once
    started = time.monotonic()
    stack.start_worker(concurrency=4, pool="prefork")
    stack.start_worker(concurrency=4, pool="prefork")
    stack.start_worker(concurrency=8)
    stack.start_worker(concurrency=8)

    def settled() -> bool:
        sweep(settings=stack.settings, db=stack.db, publisher=stack.publisher)
        with stack.db.sessions() as session:
            rows = list(session.scalars(select(Message)))
        sent = Counter(m.recipient for m in rows if m.status == "sent")
        busy = any(m.status == "sending" or (m.status == "queued" and m.hold_reason is None)
                   for m in rows)
        return not busy and all(sent[p] >= CAP for p in phones)

    wait_for(settled, timeout=150, every=0.5)
    elapsed = time.monotonic() - started
    stack.stop_workers()

    # Then every number got exactly the cap; the others wait, with no attempt spent
    accepted = Counter(m.phone[-9:] for m in sandbox.accepted())
    with stack.db.sessions() as session:
        rows = list(session.scalars(select(Message)))
    over = {p: accepted[p[-9:]] for p in phones if accepted[p[-9:]] > CAP}
    held = [m for m in rows if m.status == "queued"]
    figures.update(
        numbers=NUMBERS, messages=len(rows), gateway_accepted=sum(accepted.values()),
        held=len(held), seconds=round(elapsed, 1),
    )
    assert over == {}, f"seed {seed}: numbers over the cap: {over}"
    assert all(accepted[p[-9:]] == CAP for p in phones)
    assert len(held) == NUMBERS * (PER_NUMBER - CAP)
    assert {(m.hold_reason, m.attempts) for m in held} == {("daily_cap", 0)}
