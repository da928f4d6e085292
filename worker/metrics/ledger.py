"""Metrics read from the ledger at scrape time: right however many workers there are.

Each *probe* is a plain function ``(session, context) -> metric families``; the collector
runs them in order in one session at every scrape. The reads are named functions of
:mod:`worker.ledger.metrics` and :mod:`worker.ledger.account`, kept cheap on a large ledger
(the in-flight statuses, rows created or sent in the last ``FIBOSMS_METRICS_WINDOW_SECONDS``,
and the dead letters). Nothing scans every sent message.

**Adding gauges**: write a probe below (and its read in the ledger) and add it to
:data:`PROBES`; a probe that fails is logged and reported through ``fibosms_ledger_up``
without hiding the others.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from worker import clock
from worker.brokers import QUEUES
from worker.ledger import metrics as reads
from worker.ledger.account import current_pause, last_polls, latest_balance
from worker.ledger.db import Database
from worker.ledger.marketing import held_counts, suppression_count
from worker.settings import Settings
from worker.watch.alerts import open_alerts
from worker.watch.days import vietnam_day
from worker.watch.reconcile import check_day

log = logging.getLogger("fibosms.metrics")

#: seconds: upper bounds of the enqueue-to-accepted histogram
LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0)


@dataclass(frozen=True)
class ProbeContext:
    """What every probe may use: the settings and the scrape's time."""

    settings: Settings
    now: datetime

    @property
    def window_start(self) -> datetime:
        return self.now - timedelta(seconds=self.settings.metrics_window_seconds)


Probe = Callable[[Session, ProbeContext], Iterable[Metric]]


def _code(value: int | None) -> str:
    return "none" if value is None else str(value)


def backlog(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Messages not yet final, whatever their age; what is overdue, unpublished, stalled."""
    stalled_before = ctx.now - timedelta(seconds=ctx.settings.sending_timeout_seconds)
    groups = reads.backlog(session, now=ctx.now, stalled_before=stalled_before)
    messages = GaugeMetricFamily(
        "fibosms_messages_in_flight",
        "Messages not yet final (queued, sending, retrying), by status, queue and last code.",
        labels=["status", "queue", "last_code"],
    )
    unpublished: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    stalled_count: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    oldest: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    for g in groups:
        messages.add_metric([g.status, g.queue, _code(g.last_code)], g.count)
        unpublished[g.queue] = unpublished.get(g.queue, 0.0) + g.unpublished
        stalled_count[g.queue] = stalled_count.get(g.queue, 0.0) + g.stalled
        if g.oldest_due is not None:
            age = max(0.0, (ctx.now - g.oldest_due).total_seconds())
            oldest[g.queue] = max(oldest.get(g.queue, 0.0), age)
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
    groups = reads.created_since(session, ctx.window_start)
    messages = GaugeMetricFamily(
        "fibosms_recent_messages",
        "Messages accepted in the last FIBOSMS_METRICS_WINDOW_SECONDS, by current status, "
        "queue and last code.",
        labels=["status", "queue", "last_code"],
    )
    attempts: dict[tuple[str, str], float] = defaultdict(float)
    ambiguous: dict[tuple[str, str], float] = defaultdict(float)
    for g in groups:
        messages.add_metric([g.status, g.queue, _code(g.last_code)], g.count)
        attempts[(g.status, g.queue)] += g.attempts
        ambiguous[(g.status, g.queue)] += g.ambiguous_attempts
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
    groups = reads.sent_latency(session, ctx.window_start, LATENCY_BUCKETS)
    family = GaugeHistogramMetricFamily(
        "fibosms_enqueue_to_accepted_seconds",
        "Time from acceptance (the ledger row) to the gateway's success, over the messages "
        "sent in the last FIBOSMS_METRICS_WINDOW_SECONDS (a gauge histogram: no rate()).",
        labels=["queue"],
    )
    seen = set()
    for g in groups:
        seen.add(g.queue)
        buckets = [(_le(b), float(c)) for b, c in zip(LATENCY_BUCKETS, g.at_most, strict=True)]
        buckets.append(("+Inf", float(g.count)))
        family.add_metric([g.queue], buckets, gsum_value=g.total_seconds)
    for queue in QUEUES:
        if queue not in seen:
            empty = [(_le(b), 0.0) for b in LATENCY_BUCKETS] + [("+Inf", 0.0)]
            family.add_metric([queue], empty, gsum_value=0.0)
    yield family


def dead_letters(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Every dead letter ever (a counter: failure rows are kept, replayed or not) and the
    open ones."""
    groups = reads.dead_letter_counts(session)
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
    for g in groups:
        total.add_metric([_code(g.code), g.cls], g.count)
        open_.add_metric([_code(g.code), g.cls], g.open)
    yield total
    yield open_


def account_watch(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """The balance, the age of the last polls, the pause, today's reconciliation, alerts."""
    balance = latest_balance(session)
    polls = last_polls(session)
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
    for name, at in (("balance", polls.balance), ("totals", polls.totals)):
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


def marketing_holds(session: Session, ctx: ProbeContext) -> Iterator[Metric]:
    """Marketing messages held by the advertising rules, and the suppression list's size."""
    conn = session.connection()
    held = GaugeMetricFamily(
        "fibosms_held_messages",
        "Marketing messages waiting, not failed: outside the marketing hours (quiet_hours) "
        "or over a number's daily cap (daily_cap).",
        labels=["reason"],
    )
    for reason, n in held_counts(conn).items():
        held.add_metric([reason], n)
    yield held
    yield GaugeMetricFamily(
        "fibosms_suppressed_numbers",
        "Numbers on the suppression list (sms_suppressions).",
        value=suppression_count(conn),
    )


#: run in this order at every scrape
PROBES: list[Probe] = [
    backlog, recent_outcomes, enqueue_to_accepted, dead_letters, account_watch, marketing_holds
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
        ctx = ProbeContext(self.settings, clock.now())
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
