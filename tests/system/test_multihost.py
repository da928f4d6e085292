"""Workers on separate hosts: network namespaces as machines (see ``netbed.py``).

PostgreSQL and Redis run on a service host reachable only over its veth address, two
worker hosts run real Celery workers, and this process is the producer host (it enqueues,
runs the sweep as beat would, and serves the sandbox gateway). The faults are the ones a
fleet of machines meets: a worker host cut off from the network in the middle of its
calls for longer than the sending timeout, then back; a worker host lost whole.

The figures each scenario measured are printed at the end of the run.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.fixtures.brokers import PrivateRabbit
from tests.fixtures.sandbox import SANDBOX_CLIENT_NO, SANDBOX_PASSWORD
from tests.fixtures.services import free_port, require
from tests.fixtures.stack import Stack, wait_for
from tests.system.netbed import NetBed, ServiceHost, netbed, start_worker_in
from worker.brokerstate import marker_for
from worker.ledger.migrate import upgrade
from worker.ledger.models import Failure, Message
from worker.sandbox import SandboxServer
from worker.sweep import sweep

pytestmark = pytest.mark.system

#: seconds the sandbox takes to answer each call: calls are in flight when the link goes
CALL_SECONDS = 0.8
#: seconds in sending after which the sweep takes an attempt for lost (tests: short)
SENDING_TIMEOUT = 6.0
#: seconds a cut-off host stays cut off: longer than the sending timeout
PARTITION_SECONDS = 12.0


@pytest.fixture
def bed() -> Iterator[NetBed]:
    with netbed(workers=2) as b:
        yield b


@pytest.fixture
def service(bed: NetBed) -> Iterator[ServiceHost]:
    host = ServiceHost(bed)
    try:
        yield host.start()
    finally:
        host.stop()


@pytest.fixture
def sandbox(bed: NetBed) -> Iterator[SandboxServer]:
    """The gateway on the producer host's bed address: every worker host reaches it."""
    port = free_port()
    server = SandboxServer(
        SANDBOX_CLIENT_NO, SANDBOX_PASSWORD, host=bed.producer_addr, port=port
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, bed: NetBed, service: ServiceHost) -> Iterator[str]:
    """The service host's Redis, or a RabbitMQ node started in the service namespace."""
    if request.param == "redis":
        yield service.redis_url
        return
    require(shutil.which("rabbitmq-server") is not None, "rabbitmq-server is not installed")
    node = PrivateRabbit(host=bed.service_addr, prefix=bed.exec_prefix(bed.service))
    try:
        yield node.start().url
    finally:
        node.stop()


@pytest.fixture
def bed_stack(make_stack: Callable[..., Stack], service: ServiceHost, broker_url: str) -> Stack:
    upgrade(service.pg_url)
    return make_stack(
        service.pg_url,
        broker_url,
        FIBOSMS_READ_TIMEOUT_SECONDS="2",
        FIBOSMS_CONNECT_TIMEOUT_SECONDS="1",
        FIBOSMS_SENDING_TIMEOUT_SECONDS=str(SENDING_TIMEOUT),
        FIBOSMS_REPUBLISH_AFTER_SECONDS="3",
        FIBOSMS_MAX_ATTEMPTS="6",
        FIBOSMS_BULK_BATCH_SIZE="10",
        FIBOSMS_BATCH_CONCURRENCY="5",
        # one task reserved per thread: the two worker hosts share so small a run evenly, so
        # the host a fault strikes is holding work (with 4 per thread, the first host to
        # poll can reserve most of it and sit idle when the fault comes)
        FIBOSMS_PREFETCH_MULTIPLIER="1",
    )


class Sweeper:
    """Beat's sweep, once a second, from the producer host."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.marker = marker_for(stack.settings)
        self.recovered = 0
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.once()

    def once(self) -> None:
        s = self.stack
        report = sweep(settings=s.settings, db=s.db, publisher=s.publisher, marker=self.marker)
        self.recovered += report.recovered
        self.passes += 1

    def __enter__(self) -> Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def enqueue(stack: Stack, n: int, sandbox: SandboxServer, prefix: str) -> list[int]:
    """``n`` messages, half transactional (one send task each), half marketing (batches)."""
    ids = []
    for i in range(n):
        phone = f"{prefix}{i:06d}"
        sandbox.script(phone, [{"code": 200, "delay": CALL_SECONDS} for _ in range(6)])
        kind = "transactional" if i % 2 else "marketing"
        ids.append(stack.producer.enqueue_sms(phone, f"bed {i}", kind=kind))
    return ids


def settle(stack: Stack, ids: list[int], timeout: float = 60) -> None:
    def done() -> bool:
        with stack.db.sessions() as session:
            moving = session.scalar(
                select(func.count()).select_from(Message).where(
                    Message.id.in_(ids), Message.status.in_(("queued", "sending", "retrying"))
                )
            )
        return moving == 0

    wait_for(done, timeout=timeout, every=0.5)


def account(stack: Stack, sandbox: SandboxServer, ids: list[int]) -> dict[str, Any]:
    """Compare the gateway's accepted calls with the ledger, message by message."""
    accepted = Counter(m.phone for m in sandbox.accepted())
    with stack.db.sessions() as session:
        rows = list(session.scalars(select(Message).where(Message.id.in_(ids))))
        open_failures = set(session.scalars(
            select(Failure.message_id).where(Failure.replayed_at.is_(None))
        ))
    unaccounted = {
        m.id: (accepted[m.recipient], m.status, m.ambiguous_attempts)
        for m in rows
        if accepted[m.recipient] > (1 if m.status == "sent" else 0) + m.ambiguous_attempts
    }
    return {
        "rows": len(rows),
        "statuses": dict(Counter(m.status for m in rows)),
        "calls_accepted": sum(accepted[m.recipient] for m in rows),
        "second_sends": sum(max(0, accepted[m.recipient] - 1) for m in rows),
        "ambiguous_recorded": sum(m.ambiguous_attempts for m in rows),
        "unaccounted": unaccounted,
        "dead_without_letter": [m.id for m in rows
                                if m.status == "dead" and m.id not in open_failures],
        "sent_never_accepted": [m.id for m in rows
                                if m.status == "sent" and accepted[m.recipient] == 0],
    }


def log_count(log: Path, needle: str) -> int:
    return log.read_text(errors="replace").count(needle)


@pytest.mark.timeout(150)
def test_a_worker_host_cut_off_mid_batch_loses_nothing_and_sends_twice_only_when_recorded(
    bed: NetBed, bed_stack: Stack, sandbox: SandboxServer, figures: dict[str, Any]
) -> None:
    stack = bed_stack
    w1, w2 = bed.workers
    # Given worker host 1 alone, in the middle of its calls (each takes 0.8 s to answer)
    log1 = start_worker_in(stack, bed, w1, concurrency=4)
    ids = enqueue(stack, 60, sandbox, "0915")
    wait_for(lambda: len(sandbox.calls()) >= 8, timeout=30, every=0.05)
    with Sweeper(stack) as sweeper:
        # When its link goes down for longer than the sending timeout
        started = time.monotonic()
        bed.cut(w1)
        calls_at_cut = len(sandbox.calls())
        # and worker host 2 carries on meanwhile
        log2 = start_worker_in(stack, bed, w2, concurrency=4)
        time.sleep(max(0.0, PARTITION_SECONDS - (time.monotonic() - started)))
        recovered_during_cut = sweeper.recovered
        bed.heal(w1)
        # Then, once host 1 is back, everything settles
        settle(stack, ids, timeout=70)
        took = time.monotonic() - started
    time.sleep(2 * CALL_SECONDS)  # any last late write of host 1 has landed
    stack.stop_workers()
    found = account(stack, sandbox, ids)
    lost_claims = log_count(log1, "claim lost")
    late_answers = log_count(log1, "answered after the sweep guessed")
    figures.update(
        messages=len(ids),
        calls_before_cut=calls_at_cut,
        partition_s=PARTITION_SECONDS,
        recovered_by_sweep=sweeper.recovered,
        recovered_during_cut=recovered_during_cut,
        late_outcomes_refused=lost_claims,
        late_answers_accepted=late_answers,
        host2_sent=log_count(log2, ": sent"),
        settle_s=round(took, 1),
        **{k: v for k, v in found.items() if not isinstance(v, list | dict) or k == "statuses"},
    )
    # nothing accepted is lost: every row is final, sent or dead with a letter saying why
    assert found["rows"] == len(ids)
    assert set(found["statuses"]) <= {"sent", "dead"}, found["statuses"]
    assert found["dead_without_letter"] == []
    # a second SMS only after a recorded ambiguous attempt
    assert found["unaccounted"] == {}
    assert found["sent_never_accepted"] == []
    # and the cut did what it was meant to: host 1's attempts were taken over by the sweep
    assert recovered_during_cut > 0
    assert found["ambiguous_recorded"] >= recovered_during_cut - late_answers


@pytest.mark.timeout(150)
def test_a_worker_host_killed_whole_loses_nothing(
    bed: NetBed, bed_stack: Stack, sandbox: SandboxServer, figures: dict[str, Any]
) -> None:
    stack = bed_stack
    w1, w2 = bed.workers
    # Given both worker hosts sending
    start_worker_in(stack, bed, w1, concurrency=4)
    log2 = start_worker_in(stack, bed, w2, concurrency=4)
    ids = enqueue(stack, 60, sandbox, "0916")
    with Sweeper(stack) as sweeper:
        wait_for(lambda: len(sandbox.calls()) >= 12, timeout=30, every=0.05)
        # When host 1 loses power: every process in it dies at once
        started = time.monotonic()
        killed = bed.kill_host(w1)
        calls_at_kill = len(sandbox.calls())
        # Then host 2 and the sweep finish the run
        settle(stack, ids, timeout=70)
        took = time.monotonic() - started
    stack.stop_workers()
    found = account(stack, sandbox, ids)
    figures.update(
        messages=len(ids),
        processes_killed=killed,
        calls_before_kill=calls_at_kill,
        recovered_by_sweep=sweeper.recovered,
        host2_sent=log_count(log2, ": sent"),
        settle_s=round(took, 1),
        **{k: v for k, v in found.items() if not isinstance(v, list | dict) or k == "statuses"},
    )
    assert killed >= 1
    assert found["rows"] == len(ids)
    assert set(found["statuses"]) <= {"sent", "dead"}, found["statuses"]
    assert found["dead_without_letter"] == []
    assert found["unaccounted"] == {}
    assert found["sent_never_accepted"] == []
    # host 1 died holding attempts: the sweep recovered them as ambiguous
    assert sweeper.recovered > 0
    assert found["ambiguous_recorded"] >= sweeper.recovered
