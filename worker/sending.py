"""Attempts at messages: claim, call the gateway, record the outcome.

Plain Python: the Celery tasks only call :func:`process_message` (one message, the urgent
and default queues) or :func:`process_batch` (many, the bulk queue: one claim statement,
concurrent calls over the pooled connections, each outcome recorded as its call ends;
each message keeps its own attempts, retry time and dead letter).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from worker.breaker import Breaker, NoBreaker
from worker.brokers import COUNTDOWN_MAX_SECONDS
from worker.callwindow import CallWindow, NoWindow
from worker.codes import INSUFFICIENT_BALANCE, SUBSCRIBER_REFUSES
from worker.decide import Decision, decide
from worker.errors import AmbiguousError, FiboError, TransientError
from worker.gateway.parse import SendReceipt
from worker.ledger.account import is_paused, pause
from worker.ledger.claims import (
    ClaimedMessage,
    claim_many,
    defer,
    expire_if_due,
    finish_attempt,
    finish_late,
    finish_sent,
    give_back,
    mark_unpublished,
    publish_if_resumed,
    unpublish_unclaimed,
)
from worker.ledger.clock import database_now
from worker.ledger.db import Database
from worker.ledger.models import Status
from worker.ledger.suppressions import GATEWAY, add_suppressions
from worker.publish import Publishes
from worker.ratelimit import NoLimit, RateLimiter, Sleep
from worker.rules.marketing import MarketingPolicy
from worker.rules.phone import format_for_gateway, mask_phone
from worker.settings import Settings
from worker.settings.rules import token_wait_seconds
from worker.watch.alerts import raise_alert

if TYPE_CHECKING:
    from worker.gateway.burst import Burst

log = logging.getLogger("fibosms.send")

#: calls of a batch that end within this many seconds of each other record their
#: outcomes in one transaction
SHARED_RECORD_SECONDS = 0.005



class Result(StrEnum):
    """What one run of a send task did with a message."""

    SENT = "sent"
    RETRYING = "retrying"
    DEAD = "dead"
    EXPIRED = "expired"
    #: not ours: already sent, being sent, not yet due, or unknown id
    SKIPPED = "skipped"
    #: the sweep took the row over while we were calling the gateway
    LOST_CLAIM = "lost-claim"
    #: the account is paused: the message waits in the ledger, its attempts untouched
    PAUSED = "paused"
    #: the circuit breaker is open or no token came in time: left for later, attempts untouched
    DEFERRED = "deferred"


class Sender(Protocol):
    def send(
        self, phone: str, text: str, *, sender: str | None = ..., service_type: int = ...
    ) -> object: ...


@runtime_checkable
class Bursting(Sender, Protocol):
    """A sender that can also drive many calls from one thread (the FIBO client)."""

    def burst(self, *, bounded: bool = ...) -> Burst | None: ...


#: what one call ended with: a success code, the error, or None when no call was made
Outcome = int | FiboError | None
Attempted = tuple[ClaimedMessage, Outcome]


@dataclass
class Gate:
    """What stands between a claimed message and the gateway: the breaker and the limit."""

    breaker: Breaker = field(default_factory=NoBreaker)
    limiter: RateLimiter = field(default_factory=NoLimit)
    #: how many calls the process keeps in flight (worker.callwindow)
    window: CallWindow = field(default_factory=NoWindow)


def process_message(
    message_id: int,
    *,
    settings: Settings,
    db: Database,
    client: Sender,
    publisher: Publishes,
    gate: Gate | None = None,
    rng: random.Random | None = None,
) -> Result:
    """Send message ``message_id`` once if it is ours to send, and record what happened."""
    gate = gate or Gate()

    def call(claimed: list[ClaimedMessage]) -> Iterator[list[Attempted]]:
        yield [(m, _attempt(client, m, settings, gate)) for m in claimed]

    results = _run(
        [message_id], settings=settings, db=db, publisher=publisher, gate=gate, rng=rng,
        call=call,
    )
    return results.get(message_id, Result.SKIPPED)


def process_batch(
    message_ids: Sequence[int],
    *,
    settings: Settings,
    db: Database,
    client: Sender,
    publisher: Publishes,
    executor: Executor,
    gate: Gate | None = None,
    rng: random.Random | None = None,
) -> dict[int, Result]:
    """Send many messages at once; the result of each id.

    Each outcome is recorded as soon as its call ends (those that end together share a
    transaction), so no row waits in ``sending`` for the slowest call of its batch.
    """
    gate = gate or Gate()

    def call(claimed: list[ClaimedMessage]) -> Iterator[list[Attempted]]:
        burst = client.burst() if isinstance(client, Bursting) else None
        if burst is not None:
            with burst:
                yield from _burst_calls(burst, claimed, settings, gate)
            return
        pending: dict[Future[Outcome], ClaimedMessage] = {
            executor.submit(_attempt, client, m, settings, gate): m for m in claimed
        }
        while pending:
            done, rest = wait(pending, return_when=FIRST_COMPLETED)
            if rest:  # calls that end a moment later share the transaction
                done |= wait(rest, timeout=SHARED_RECORD_SECONDS)[0]
            yield [(pending.pop(f), f.result()) for f in done]

    return _run(
        list(dict.fromkeys(message_ids)),
        settings=settings,
        db=db,
        publisher=publisher,
        gate=gate,
        rng=rng,
        call=call,
    )


def _run(
    ids: list[int],
    *,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    gate: Gate,
    rng: random.Random | None,
    call: Callable[[list[ClaimedMessage]], Iterator[list[Attempted]]],
) -> dict[int, Result]:
    wait_seconds = gate.breaker.wait_seconds()
    if wait_seconds > 0:
        with db.transaction() as session:
            now = database_now(session)
            defer(session, ids, now + timedelta(seconds=wait_seconds), now)
        return dict.fromkeys(ids, Result.DEFERRED)

    with db.transaction() as session:
        # one clock for every host: the database's (docs/multi-host.md, "Clocks")
        now = database_now(session)
        claimed = claim_many(session, ids, now, MarketingPolicy.from_settings(settings))
        taken = {m.id for m in claimed}
        results, stranded = _unclaimed(session, [i for i in ids if i not in taken], now)
    if stranded:
        _publish_if_resumed(stranded, db=db, publisher=publisher)
    for attempted in call(claimed):
        decided = [
            (msg, None if outcome is None else decide(
                outcome,
                kind=msg.kind,
                attempts=msg.budget_attempt,
                prior_ambiguous=msg.prior_ambiguous,
                settings=settings,
                rng=rng,
            ))
            for msg, outcome in attempted
        ]
        results.update(_record(decided, db=db, publisher=publisher))
    return results


def _unclaimed(
    session: Session, ids: list[int], now: datetime
) -> tuple[dict[int, Result], list[int]]:
    """Why each id was not claimed: expired, paused, or simply not ours; and the due ids
    left unpublished because the account was (or, as the claim ran, had been) paused."""
    results: dict[int, Result] = {}
    if not ids:
        return results, []
    paused: bool | None = None
    for message_id in ids:
        if expire_if_due(session, message_id, now):
            log.info("message %d expired before sending", message_id,
                     extra={"message_id": message_id})
            results[message_id] = Result.EXPIRED
            continue
        if paused is None:
            paused = is_paused(session)
        if paused:
            results[message_id] = Result.PAUSED
        else:
            results[message_id] = Result.SKIPPED
    waiting = [i for i, r in results.items() if r is Result.PAUSED]
    if waiting:
        # the sweep publishes them again once sending resumes
        mark_unpublished(session, waiting)
    # a task let out before its row was due (this host's clock ahead of the one that set
    # its countdown), or a due row the claim found paused and a resume freed since: left
    # unpublished, so the sweep publishes it once due instead of republish_after_seconds on
    skipped = [i for i, r in results.items() if r is Result.SKIPPED]
    return results, waiting + unpublish_unclaimed(session, skipped, now)


def _publish_if_resumed(ids: list[int], *, db: Database, publisher: Publishes) -> None:
    """Publish again the rows a pause left waiting, if sending has resumed meanwhile: a
    resume that committed while this claim ran published what waited before these were
    marked, and the sweep's next pass may be a while off."""
    with db.transaction() as session:
        items = publish_if_resumed(session, ids, database_now(session))
    if items:
        failed = publisher.publish(items)
        if failed:
            with db.transaction() as session:
                mark_unpublished(session, failed)


def _burst_calls(
    burst: Burst, claimed: list[ClaimedMessage], settings: Settings, gate: Gate
) -> Iterator[list[Attempted]]:
    """A batch's calls driven by this thread (:mod:`worker.gateway.burst`); outcomes
    handed on as they end, those ending within :data:`SHARED_RECORD_SECONDS` together.

    Each message still takes its token first, and each outcome still tells the breaker.
    The call window does not apply: it spares threads from crowding one core, and a burst
    has one thread; ``FIBOSMS_BATCH_CONCURRENCY`` bounds the batch's calls in flight, as
    the send tasks' time limits assume (``fibosms.celeryapp.config.send_time_limits``).
    """
    waiting = deque(claimed)
    while waiting or burst.pending:
        untried: list[Attempted] = []
        while waiting and burst.room():
            msg = waiting.popleft()
            # the calls already started go on while this one waits for its turn
            if not _token(msg, settings, gate, sleep=burst.pump):
                untried.append((msg, None))
                continue
            burst.start(
                msg,
                format_for_gateway(msg.recipient, settings.phone_format),
                msg.text,
                sender=msg.sender or settings.sender_name,
                service_type=msg.service_type,
                masked_phone=mask_phone(msg.recipient),
            )
        if untried:
            yield untried
        ended = burst.wait()
        until = time.monotonic() + SHARED_RECORD_SECONDS
        while ended and burst.pending and (left := until - time.monotonic()) > 0:
            more = burst.wait(left)
            if not more:
                break
            ended += more
        if ended:
            yield [(msg, _judged(outcome, gate)) for msg, outcome in ended]


def _attempt(client: Sender, msg: ClaimedMessage, settings: Settings, gate: Gate) -> Outcome:
    """One gateway call: the success code, the error, or None when no call was made.

    None (no token in time, or the limiter itself failed) gives the claim back uncounted:
    an attempt that never reached the network is not ambiguous.
    """
    if not _token(msg, settings, gate):
        return None
    with gate.window.call():
        outcome = call_gateway(client, msg, settings)
    return _judged(outcome, gate)


def _token(
    msg: ClaimedMessage, settings: Settings, gate: Gate, sleep: Sleep = time.sleep
) -> bool:
    """Whether the rate limit let ``msg`` go (False: no token in time, or it failed)."""
    cost = msg.segments if settings.rate_per_segment else 1
    timeout = token_wait_seconds(settings.sending_timeout_seconds, rate_limited=True)
    try:
        return gate.limiter.acquire(
            cost, urgent=msg.queue == "urgent", timeout=timeout, sleep=sleep
        )
    except Exception:
        log.exception("rate limiter failed before the call; message %d given back", msg.id,
                      extra={"message_id": msg.id})
        return False


def _judged(outcome: int | SendReceipt | FiboError, gate: Gate) -> int | FiboError:
    """A call's outcome as the ledger takes it (the success code or the error), told to the
    circuit breaker."""
    if isinstance(outcome, SendReceipt):
        outcome = outcome.code
    try:
        if isinstance(outcome, (TransientError, AmbiguousError)):
            gate.breaker.failure()
        else:
            gate.breaker.success()  # the gateway answered, even if it refused the message
    except Exception:
        # the outcome is what matters now: losing it would turn a known answer into a guess
        log.exception("circuit breaker failed to record a call")
    return outcome


def call_gateway(client: Sender, msg: ClaimedMessage, settings: Settings) -> int | FiboError:
    """The success code, or the error the attempt ended with."""
    try:
        receipt = client.send(
            format_for_gateway(msg.recipient, settings.phone_format),
            msg.text,
            sender=msg.sender or settings.sender_name,
            service_type=msg.service_type,
        )
    except FiboError as exc:
        return exc
    except Exception as exc:
        # a bug, not the gateway: the request may have left, so treat it as unknown
        log.exception("unexpected error from the gateway client")
        return AmbiguousError(f"unexpected client error ({type(exc).__name__})")
    code: int = getattr(receipt, "code", 200)
    return code


def _record(
    decided: list[tuple[ClaimedMessage, Decision | None]],
    *,
    db: Database,
    publisher: Publishes,
) -> dict[int, Result]:
    """Write every decision in one transaction; publish short retries with a countdown."""
    results: dict[int, Result] = {}
    countdowns: list[tuple[ClaimedMessage, float]] = []
    with db.transaction() as session:
        # a retry falls due by the database's clock, whatever this host's clock says
        now = database_now(session)
        recorded = _record_sent(session, decided, now)
        for msg, decision in decided:
            if msg.id in recorded:
                assert decision is not None
                _log_outcome(msg, decision)
                results[msg.id] = Result.SENT
                continue
            if decision is None:
                give_back(session, msg.holder, now)
                results[msg.id] = Result.DEFERRED
                continue
            result, countdown = _record_one(session, msg, decision, now)
            results[msg.id] = result
            if countdown is not None:
                countdowns.append((msg, countdown))
    for msg, countdown in countdowns:
        failed = publisher.publish([(msg.id, msg.queue)], countdown=countdown)
        if failed:
            with db.transaction() as session:
                mark_unpublished(session, failed)
    return results


def _record_one(
    session: Session, msg: ClaimedMessage, decision: Decision, now: datetime
) -> tuple[Result, float | None]:
    due: datetime | None = None
    countdown: float | None = None
    if decision.status is Status.RETRYING:
        assert decision.delay is not None
        due = now + timedelta(seconds=decision.delay)
        if decision.delay <= COUNTDOWN_MAX_SECONDS:
            countdown = decision.delay
    if decision.account_wide:
        if not pause(
            session,
            code=decision.code,
            reason=decision.meaning or "account refused",
            message_id=msg.id,
            now=now,
        ):
            # another message paused the account first: this one waits, attempt not counted
            give_back(session, msg.holder, now)
            return Result.PAUSED, None
        _alert_paused(session, msg, decision, now)
    # a countdown publish counts from the due time; a long wait is left to the sweep
    transition = decision.transition(
        due=due, published_at=due if countdown is not None else None
    )
    if not finish_attempt(session, msg.holder, transition, now):
        if decision.ambiguous or not finish_late(session, msg.holder, transition, now):
            log.warning(
                "claim lost: the row was recovered by the sweep during the call",
                extra={"message_id": msg.id, "attempt": msg.attempt},
            )
            return Result.LOST_CLAIM, None
        log.warning(
            "attempt %d of message %d answered after the sweep guessed its outcome; "
            "the answer replaces the guess",
            msg.attempt,
            msg.id,
            extra={"message_id": msg.id, "attempt": msg.attempt},
        )
    _suppress_refused(session, msg, decision, now)
    _log_outcome(msg, decision)
    return Result(decision.status.value), countdown


def _record_sent(
    session: Session, decided: list[tuple[ClaimedMessage, Decision | None]], now: datetime
) -> set[int]:
    """Record the accepted sends among ``decided`` a statement per answer code; the ids
    recorded. The rest (and any whose claim moved) take :func:`_record_one`'s path."""
    by_code: dict[int, list[ClaimedMessage]] = {}
    for msg, decision in decided:
        if (
            decision is not None
            and decision.status is Status.SENT
            and not decision.account_wide
            and decision.code is not None
        ):
            by_code.setdefault(decision.code, []).append(msg)
    recorded: set[int] = set()
    for code, msgs in by_code.items():
        if len(msgs) > 1:
            recorded |= finish_sent(session, [m.holder for m in msgs], code, now)
    return recorded


def _log_outcome(msg: ClaimedMessage, decision: Decision) -> None:
    log.info(
        "attempt %d of message %d to %s: %s%s",
        msg.attempt,
        msg.id,
        mask_phone(msg.recipient),
        decision.status.value,
        f" (code {decision.code})" if decision.code is not None else "",
        extra={
            "message_id": msg.id,
            "attempt": msg.attempt,
            "code": decision.code,
            "status": decision.status.value,
            "phone": mask_phone(msg.recipient),
        },
    )


def _suppress_refused(
    session: Session, msg: ClaimedMessage, decision: Decision, now: datetime
) -> None:
    """Code 7 (the subscriber refuses messages): the number joins the suppression list in
    the transaction that records the dead letter, so no campaign pays for it again."""
    if decision.status is Status.DEAD and decision.code == SUBSCRIBER_REFUSES:
        add_suppressions(
            session,
            [msg.recipient],
            reason=f"gateway code {SUBSCRIBER_REFUSES} on message {msg.id}",
            source=GATEWAY,
            now=now,
        )


def _alert_paused(session: Session, msg: ClaimedMessage, decision: Decision, now: datetime) -> None:
    log.error(
        "account-wide code %s (%s): sending paused; message %d dead-lettered",
        decision.code,
        decision.meaning,
        msg.id,
        extra={"message_id": msg.id, "code": decision.code},
    )
    resumes = (
        "resumes by itself when a balance poll sees money"
        if decision.code == INSUFFICIENT_BALANCE
        else "run `fibosms resume` once the account is fixed"
    )
    raise_alert(
        session,
        kind="paused",
        key="paused",
        message=(
            f"sending paused: FIBO code {decision.code} ({decision.meaning}) on message "
            f"{msg.id}; {resumes}"
        ),
        now=now,
    )

