"""Metrics read from the ledger at scrape time: right however many workers there are.

Each *probe* is a plain function ``(session, context) -> metric families``; the collector
runs them in order in one session at every scrape. The queries stay cheap on a large
ledger: the in-flight statuses (``ix_sms_messages_status_due``), rows created or sent in
the last ``FIBOSMS_METRICS_WINDOW_SECONDS`` (``ix_sms_messages_created_at``,
``ix_sms_messages_sent_at``), and ``sms_failures`` (small: dead letters only). Nothing
scans every sent message.

**Adding gauges**: write a probe below and add it to :data:`PROBES`; a probe that fails is
logged and reported through ``fibosms_ledger_up`` without hiding the others.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from celeryconfig import QUEUES
from worker.ledger.db import Database
from worker.ledger.models import (
    IN_FLIGHT,
    SENDABLE,
    BalancePoll,
    Failure,
    Message,
    Status,
    TotalsPoll,
)
from worker.settings import Settings
from worker.watch.account import current_pause
from worker.watch.alerts import open_alerts
from worker.watch.days import vietnam_day
from worker.watch.reconcile import check_day

log = logging.getLogger("fibosms.metrics")

#: seconds: upper bounds of the enqueue-to-accepted histogram
LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0)


@dataclass(frozen=True)
class ProbeContext:
    """What every probe may use: the settings, the scrape's time, the SQL dialect."""

    settings: Settings
    now: datetime
    dialect: str

    @property
    def window_start(self) -> datetime:
        return self.now - timedelta(seconds=self.settings.metrics_window_seconds)


Probe = Callable[[Session, ProbeContext], Iterable[Metric]]


def _code(value: int | None) -> str:
    return "none" if value is None else str(value)


def backlog(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Messages not yet final, whatever their age; what is overdue, unpublished, stalled."""
    due = Message.status.in_(SENDABLE) & (Message.next_attempt_at <= ctx.now)
    stalled_before = ctx.now - timedelta(seconds=ctx.settings.sending_timeout_seconds)
    stalled = (Message.status == Status.SENDING.value) & (Message.claimed_at < stalled_before)
    rows = session.execute(
        select(
            Message.status,
            Message.queue,
            Message.last_code,
            func.count(),
            func.sum(case((Message.status.in_(SENDABLE) & Message.published_at.is_(None), 1),
                          else_=0)),
            func.sum(case((stalled, 1), else_=0)),
            func.min(case((due, Message.next_attempt_at))),
        )
        .where(Message.status.in_(IN_FLIGHT))
        .group_by(Message.status, Message.queue, Message.last_code)
    ).all()
    messages = GaugeMetricFamily(
        "fibosms_messages_in_flight",
        "Messages not yet final (queued, sending, retrying), by status, queue and last code.",
        labels=["status", "queue", "last_code"],
    )
    unpublished: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    stalled_count: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    oldest: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    for status, queue, last_code, count, n_unpublished, n_stalled, oldest_due in rows:
        messages.add_metric([status, queue, _code(last_code)], count)
        unpublished[queue] = unpublished.get(queue, 0.0) + (n_unpublished or 0)
        stalled_count[queue] = stalled_count.get(queue, 0.0) + (n_stalled or 0)
        if oldest_due is not None:
            age = max(0.0, (ctx.now - oldest_due).total_seconds())
            oldest[queue] = max(oldest.get(queue, 0.0), age)
    yield messages
    yield _per_queue(
        "fibosms_oldest_due_seconds",
        "Age of the oldest message that is due but not yet claimed (0: none waiting).",
        oldest,
    )
    yield _per_queue(
        "fibosms_unpublished_messages",
        "Sendable messages whose publish failed or is pending; the sweep publishes them.",
        unpublished,
    )
    yield _per_queue(
        "fibosms_stalled_sending_messages",
        "Messages in sending past FIBOSMS_SENDING_TIMEOUT_SECONDS; the sweep recovers them.",
        stalled_count,
    )


def recent_outcomes(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Messages accepted within the window, by where they are now; their attempts."""
    rows = session.execute(
        select(
            Message.status,
            Message.queue,
            Message.last_code,
            func.count(),
            func.sum(Message.attempts),
            func.sum(Message.ambiguous_attempts),
        )
        .where(Message.created_at >= ctx.window_start)
        .group_by(Message.status, Message.queue, Message.last_code)
    ).all()
    messages = GaugeMetricFamily(
        "fibosms_recent_messages",
        "Messages accepted in the last FIBOSMS_METRICS_WINDOW_SECONDS, by current status, "
        "queue and last code.",
        labels=["status", "queue", "last_code"],
    )
    attempts: dict[tuple[str, str], float] = defaultdict(float)
    ambiguous: dict[tuple[str, str], float] = defaultdict(float)
    for status, queue, last_code, count, n_attempts, n_ambiguous in rows:
        messages.add_metric([status, queue, _code(last_code)], count)
        attempts[(status, queue)] += n_attempts or 0
        ambiguous[(status, queue)] += n_ambiguous or 0
    yield messages
    yield _by_status_queue(
        "fibosms_recent_attempts",
        "Gateway attempts made for the messages of fibosms_recent_messages.",
        attempts,
    )
    yield _by_status_queue(
        "fibosms_recent_ambiguous_attempts",
        "Attempts whose outcome was unknown (timeout, cut connection), same messages.",
        ambiguous,
    )


def enqueue_to_accepted(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """A histogram of acceptance to the gateway's 200, over messages sent in the window."""
    seconds = _seconds_between(Message.created_at, Message.sent_at, ctx.dialect)
    columns: list[Any] = [
        Message.queue,
        func.count(),
        func.coalesce(func.sum(seconds), 0.0),
    ]
    columns += [func.sum(case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS]
    rows = session.execute(
        select(*columns)
        .where(Message.sent_at >= ctx.window_start, Message.status == Status.SENT.value)
        .group_by(Message.queue)
    ).all()
    family = GaugeHistogramMetricFamily(
        "fibosms_enqueue_to_accepted_seconds",
        "Time from acceptance (the ledger row) to the gateway's success, over the messages "
        "sent in the last FIBOSMS_METRICS_WINDOW_SECONDS (a gauge histogram: no rate()).",
        labels=["queue"],
    )
    seen = set()
    for queue, count, total, *cumulative in rows:
        seen.add(queue)
        buckets = [(_le(b), float(c or 0)) for b, c in zip(LATENCY_BUCKETS, cumulative,
                                                           strict=True)]
        buckets.append(("+Inf", float(count)))
        family.add_metric([queue], buckets, gsum_value=float(total))
    for queue in QUEUES:
        if queue not in seen:
            empty = [(_le(b), 0.0) for b in LATENCY_BUCKETS] + [("+Inf", 0.0)]
            family.add_metric([queue], empty, gsum_value=0.0)
    yield family


def dead_letters(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Every dead letter ever (a counter: failure rows are kept, replayed or not) and the
    open ones."""
    rows = session.execute(
        select(
            Failure.code,
            Failure.cls,
            func.count(),
            func.sum(case((Failure.replayed_at.is_(None), 1), else_=0)),
        ).group_by(Failure.code, Failure.cls)
    ).all()
    total = CounterMetricFamily(
        "fibosms_dead_letters",
        "Dead letters written to sms_failures, by FIBO code and class (kept after a replay).",
        labels=["code", "class"],
    )
    open_ = GaugeMetricFamily(
        "fibosms_dead_letters_open",
        "Dead letters not replayed, by FIBO code and class.",
        labels=["code", "class"],
    )
    for code, cls, count, n_open in rows:
        total.add_metric([_code(code), cls], count)
        open_.add_metric([_code(code), cls], n_open or 0)
    yield total
    yield open_


def account_watch(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """The balance, the age of the last polls, the pause, today's reconciliation, alerts."""
    balance = session.execute(
        select(BalancePoll.balance, BalancePoll.polled_at)
        .order_by(BalancePoll.polled_at.desc(), BalancePoll.id.desc())
        .limit(1)
    ).first()
    last_totals = session.scalar(select(func.max(TotalsPoll.polled_at)))
    if balance is not None:
        yield GaugeMetricFamily(
            "fibosms_balance", "The account's balance at the last poll (messages or VND).",
            value=float(balance.balance),
        )
    ages = GaugeMetricFamily(
        "fibosms_last_poll_age_seconds",
        "Seconds since the last successful poll of the gateway.",
        labels=["poll"],
    )
    for name, at in (("balance", balance.polled_at if balance else None), ("totals", last_totals)):
        if at is not None:
            ages.add_metric([name], (ctx.now - at).total_seconds())
    yield ages
    pause = current_pause(session)
    paused = GaugeMetricFamily(
        "fibosms_account_paused",
        "1 while sending is paused after an account-wide code (label: the code).",
        labels=["code"],
    )
    paused.add_metric([_code(pause.code)], 1.0 if pause.paused else 0.0)
    yield paused
    today = vietnam_day(ctx.now)
    check = check_day(session, today, tolerance=ctx.settings.reconcile_tolerance)
    if check is not None:
        yield GaugeMetricFamily(
            "fibosms_reconcile_difference",
            "Today's (Vietnam) gateway-accepted count minus our sent count at its last poll.",
            value=check.difference,
        )
    alerts = GaugeMetricFamily(
        "fibosms_alerts_open", "Open alerts of the account watch, by kind.", labels=["kind"]
    )
    counts: dict[str, int] = defaultdict(int)
    for alert in open_alerts(session):
        counts[alert["kind"]] += 1
    for kind in ("low_balance", "mismatch", "paused"):
        alerts.add_metric([kind], counts.get(kind, 0))
    yield alerts


#: run in this order at every scrape
PROBES: list[Probe] = [
    backlog, recent_outcomes, enqueue_to_accepted, dead_letters, account_watch
]


class LedgerCollector(Collector):
    """Runs :data:`PROBES` against the ledger at each scrape."""

    def __init__(
        self, settings: Settings, db: Database, probes: Sequence[Probe] | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.probes = PROBES if probes is None else probes

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterable[Metric]:
        started = time.monotonic()
        up = 1.0
        ctx = ProbeContext(self.settings, datetime.now(UTC), self.db.dialect)
        try:
            with self.db.sessions() as session:
                for probe in self.probes:
                    try:
                        families = list(probe(session, ctx))
                    except Exception as exc:
                        up = 0.0
                        log.warning("metrics probe %s failed: %s", probe.__name__,
                                    type(exc).__name__)
                        session.rollback()
                        continue
                    yield from families
        except Exception as exc:  # no connection at all
            up = 0.0
            log.warning("metrics: the ledger cannot be read: %s", type(exc).__name__)
        yield GaugeMetricFamily(
            "fibosms_ledger_up", "1 when every ledger probe of this scrape succeeded.", value=up
        )
        yield GaugeMetricFamily(
            "fibosms_ledger_scrape_seconds",
            "Time the ledger probes of this scrape took.",
            value=time.monotonic() - started,
        )


def _seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def _per_queue(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["queue"])
    for queue, value in values.items():
        family.add_metric([queue], value)
    return family


def _by_status_queue(
    name: str, documentation: str, values: dict[tuple[str, str], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status", "queue"])
    for (status, queue), value in values.items():
        family.add_metric([status, queue], value)
    return family
