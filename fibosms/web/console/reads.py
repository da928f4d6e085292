"""What each console page shows, read from the ledger's named functions (and the breaker).

Plain functions of the process's resources, run in a worker thread by the pages. Phone
numbers come back in full: the templates mask them, except on a message's own page for
an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fibosms.web.console import charts
from fibosms.web.resources import Resources
from worker.brokers import is_redis
from worker.clock import now as utcnow
from worker.kinds import QUEUE_OF, Kind
from worker.ledger.account import balances_since, current_pause
from worker.ledger.alerts import list_open_alerts
from worker.ledger.attempts import AttemptRecord, attempts_of
from worker.ledger.console import (
    count_open_failures,
    hourly_outcomes,
    oldest_waiting,
    open_failures_page,
    recent_alerts,
    reconciliations_since,
    totals_since,
)
from worker.ledger.listing import list_messages
from worker.ledger.metrics import backlog, created_since, dead_letter_counts
from worker.ledger.views import FailureRecord, MessageRecord, failures_of, message_record
from worker.states import IN_FLIGHT, Status
from worker.watch.days import day_bounds, vietnam_day
from worker.watch.report import day_report

QUEUES: tuple[str, ...] = tuple(QUEUE_OF[k] for k in Kind)
#: rows on a page of messages or dead letters
PAGE = 50


def overview(res: Resources, breaker_client: Any) -> dict[str, Any]:
    now = utcnow()
    stalled_before = now - timedelta(seconds=res.settings.sending_timeout_seconds)
    with res.db.sessions() as session:
        groups = backlog(session, now=now, stalled_before=stalled_before)
        waiting = oldest_waiting(session, QUEUES, now)
        today = day_report(session, vietnam_day(now), tolerance=res.settings.reconcile_tolerance)
        hours = hourly_outcomes(session, now - timedelta(hours=23), now)
        codes = dead_letter_counts(session)
        paused = current_pause(session)
        alerts = list_open_alerts(session)
        accepted = created_since(session, day_bounds(vietnam_day(now))[0])
    today_table = {s.value: dict.fromkeys(QUEUES, 0) for s in Status}
    for r in accepted:
        today_table.setdefault(r.status, dict.fromkeys(QUEUES, 0))
        today_table[r.status][r.queue] = today_table[r.status].get(r.queue, 0) + r.count
    table = {status: dict.fromkeys(QUEUES, 0) for status in IN_FLIGHT}
    for g in groups:
        table.setdefault(g.status, dict.fromkeys(QUEUES, 0))
        table[g.status][g.queue] = table[g.status].get(g.queue, 0) + g.count
    bars = [charts.Bar(f"{charts.local(h.hour):%d %b %H:00}", (h.sent, h.dead),
                       f"{charts.local(h.hour):%H}h" if i % 3 == 0 else "")
            for i, h in enumerate(hours)]
    return {
        "table": table,
        "today_table": today_table,
        "queues": QUEUES,
        "stalled": sum(g.stalled for g in groups),
        "unpublished": sum(g.unpublished for g in groups),
        "waiting": waiting,
        "today": today,
        "pause": paused,
        "alerts": alerts,
        "breaker": breaker(res, breaker_client),
        "hours": hours,
        "hours_chart": charts.stacked_bars(bars, ("sent", "dead"), (charts.SENT, charts.DEAD),
                                           label="messages per hour, last 24 hours"),
        "dead_codes": _dead_codes(codes),
        "now": now,
    }


def _dead_codes(groups: list[Any]) -> dict[str, Any]:
    by_code: dict[str, int] = {}
    for g in groups:
        if g.open:
            name = "none" if g.code is None else f"code {g.code}"
            by_code[f"{name} ({g.cls})"] = by_code.get(f"{name} ({g.cls})", 0) + g.open
    rows = sorted(by_code.items(), key=lambda kv: -kv[1])
    return {"rows": rows, "chart": charts.hbars(rows, label="open dead letters by code")}


@dataclass(frozen=True)
class BreakerView:
    state: str
    open_seconds: float = 0.0
    failures: int = 0


def breaker(res: Resources, client: Any) -> BreakerView:
    from worker.breaker import peek

    if res.settings.breaker_threshold == 0:
        return BreakerView("off")
    if client is None or not is_redis(res.settings.broker_url):
        return BreakerView("per worker")
    try:
        seconds, failures = peek(client)
    except Exception:  # the page shows it cannot tell, and goes on
        return BreakerView("unknown (Redis did not answer)")
    if seconds > 0:
        return BreakerView("open", seconds, failures)
    if failures >= res.settings.breaker_threshold:
        return BreakerView("half-open", 0.0, failures)
    return BreakerView("closed", 0.0, failures)


@dataclass(frozen=True)
class Search:
    """The message search's filters (the phone already in its stored form)."""

    recipient: str | None = None
    status: str | None = None
    kind: str | None = None
    campaign: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


def messages(res: Resources, search: Search) -> tuple[list[MessageRecord], int | None]:
    """A page of messages, newest first, and the id to continue before (None: the end)."""
    with res.db.sessions() as session:
        rows = list_messages(session, recipient=search.recipient, status=search.status,
                             kind=search.kind, campaign=search.campaign,
                             since=search.since, until=search.until, before_id=search.before_id,
                             limit=PAGE + 1)
    more = len(rows) > PAGE
    page = rows[:PAGE]
    return page, (page[-1].id if more else None)


def message(
    res: Resources, message_id: int
) -> tuple[MessageRecord, list[FailureRecord], list[AttemptRecord]] | None:
    with res.db.sessions() as session:
        record = message_record(session, message_id)
        if record is None:
            return None
        return record, failures_of(session, message_id), attempts_of(session, message_id)


def failures(
    res: Resources, *, code: int | None, cls: str | None, before: tuple[datetime, int] | None
) -> dict[str, Any]:
    with res.db.sessions() as session:
        rows = open_failures_page(session, code=code, cls=cls, before=before, limit=PAGE + 1)
        codes = dead_letter_counts(session)
    page = rows[:PAGE]
    more = len(rows) > PAGE
    return {
        "rows": page,
        "next": (page[-1].failed_at, page[-1].id) if more else None,
        "dead_codes": _dead_codes(codes),
        "codes": sorted({g.code for g in codes if g.open and g.code is not None}),
    }


def open_count(res: Resources, code: int) -> int:
    with res.db.sessions() as session:
        return count_open_failures(session, code)


def account(res: Resources) -> dict[str, Any]:
    now = utcnow()
    week_ago = now - timedelta(days=7)
    first_day: date = vietnam_day(now) - timedelta(days=13)
    with res.db.sessions() as session:
        balances = balances_since(session, week_ago)
        days = reconciliations_since(session, first_day)
        totals = totals_since(session, week_ago)
        alerts = recent_alerts(session)
        today = day_report(session, vietnam_day(now), tolerance=res.settings.reconcile_tolerance)
        paused = current_pause(session)
    runs_out = charts.runout([(b.polled_at, b.balance) for b in balances])
    hourly = _last_per_hour(balances)
    points = [(b.polled_at, float(b.balance)) for b in hourly]
    bars = [charts.Bar(f"{d.day:%d %b}: ours {d.local_sent} sent, gateway "
                       f"{d.gateway_success + d.gateway_failed + d.gateway_pending} accepted",
                       (d.local_sent,), f"{d.day:%d}") for d in days]
    gateway = [charts.Bar(b.label, (d.gateway_success + d.gateway_failed + d.gateway_pending,),
                          b.tick) for b, d in zip(bars, days, strict=True)]
    return {
        "balances": list(reversed(hourly)),
        "balance_chart": charts.line(points, label="balance over the last 7 days",
                                     start=week_ago, end=now),
        "runs_out": runs_out,
        "days": list(reversed(days)),
        "days_chart": _paired(bars, gateway),
        "totals": totals,
        "alerts": alerts,
        "today": today,
        "pause": paused,
    }


def _last_per_hour(readings: list[Any]) -> list[Any]:
    """The last reading of each hour (a poll every minute would draw 10,080 points)."""
    last: dict[tuple[int, int, int, int], Any] = {}
    for r in readings:
        at = r.polled_at
        last[(at.year, at.month, at.day, at.hour)] = r
    return list(last.values())


def _paired(ours: list[charts.Bar], theirs: list[charts.Bar]) -> Any:
    """Our sent beside the gateway's accepted, day by day."""
    merged: list[charts.Bar] = []
    for a, b in zip(ours, theirs, strict=True):
        merged.append(charts.Bar(a.label, (a.values[0], 0), a.tick))
        merged.append(charts.Bar(b.label, (0, b.values[0]), ""))
    return charts.stacked_bars(merged, ("ours sent", "gateway accepted"),
                               (charts.OURS, charts.THEIRS),
                               label="daily reconciliation, last 14 days")
