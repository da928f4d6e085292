"""Single messages gather into one run of send_sms on a busy worker (fibosms/celeryapp/gather.py).

Real parts: Redis broker, PostgreSQL ledger, the sandbox gateway over HTTP, a Celery worker
process, and Celery's own event receiver listening to what the worker reports.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack, statuses, wait_for

GATHERED = re.compile(r"send_sms ran (\d+) gathered messages")


class Events:
    """Task events from the broker, as Flower would receive them."""

    def __init__(self, stack: Stack) -> None:
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.receiver: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._listen, args=(stack,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "event receiver did not start"

    def _listen(self, stack: Stack) -> None:
        def keep(event: dict[str, Any]) -> None:
            with self.lock:
                self.seen.append(event)

        with stack.app.connection_for_read() as conn:
            self.receiver = stack.app.events.Receiver(conn, handlers={"*": keep})
            self.receiver.on_consume_ready = lambda *a, **k: self.ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.seen if e["type"] == kind]

    def close(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(5)


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    s = make_stack(pg_url, redis_url, FIBOSMS_SINGLE_BATCH_SIZE="8",
                   FIBOSMS_SINGLE_BATCH_WINDOW_MS="20")
    clean_ledger(s.db)
    return s


@pytest.fixture
def events(stack: Stack) -> Iterator[Events]:
    e = Events(stack)
    yield e
    e.close()


def gathered_runs(log: Path) -> list[int]:
    """The sizes of the gathered runs in a worker's log (a run of one logs nothing)."""
    return [int(n) for n in GATHERED.findall(log.read_text(errors="replace"))]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_deep_queue_is_sent_in_gathered_runs_each_message_once(
    stack: Stack, sandbox: Any, events: Events, pool: str
) -> None:
    ids = [stack.producer.enqueue_sms(f"0913{i:06d}", f"Ma OTP {i}", kind="otp")
           for i in range(120)]
    log = stack.start_worker(concurrency=4, pool=pool)
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=60)

    accepted = Counter(call.phone for call in sandbox.accepted())
    assert len(accepted) == 120 and set(accepted.values()) == {1}
    # every message is visible as its own task: received, then succeeded with its result
    wait_for(lambda: len(events.of("task-succeeded")) >= 120, timeout=20)
    received = {e["uuid"] for e in events.of("task-received")}
    succeeded = {e["uuid"]: e["result"] for e in events.of("task-succeeded")}
    assert len(received) == 120 and set(succeeded) == received
    assert set(succeeded.values()) == {"'sent'"}
    gathered = gathered_runs(log)
    assert gathered and max(gathered) <= 8  # FIBOSMS_SINGLE_BATCH_SIZE
    assert sum(gathered) < 120  # the first, at least, ran on its own


def test_a_message_for_an_idle_worker_runs_at_once_on_its_own(
    stack: Stack, sandbox: Any, events: Events
) -> None:
    log = stack.start_worker(concurrency=4)
    def sent(ids: list[int]) -> bool:
        return set(statuses(stack.db, ids).values()) == {"sent"}

    for i in range(3):  # one at a time, each sent before the next
        wait_for(partial(sent, [stack.producer.enqueue_sms(f"0914{i:06d}", "OTP", kind="otp")]))
    wait_for(lambda: len(events.of("task-succeeded")) == 3, timeout=20)
    assert gathered_runs(log) == []


def test_the_embedded_broker_gathers_too(
    make_stack: Callable[..., Stack], sqlite_url: str, tmp_path: Path, sandbox: Any
) -> None:
    """The SQLite broker has no event loop: the window's timer runs on a thread of its own."""
    stack = make_stack(sqlite_url, f"sqla+sqlite:///{tmp_path}/broker.db",
                       FIBOSMS_SINGLE_BATCH_SIZE="8", FIBOSMS_SINGLE_BATCH_WINDOW_MS="20")
    ids = [stack.producer.enqueue_sms(f"0915{i:06d}", f"Ma OTP {i}", kind="otp")
           for i in range(60)]
    log = stack.start_worker(concurrency=4)
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=60)
    accepted = Counter(call.phone for call in sandbox.accepted())
    assert len(accepted) == 60 and set(accepted.values()) == {1}
    assert gathered_runs(log), "no run gathered several messages"
