"""The commands an operator runs: dead letters, the account watch, the ledger, the gateway,
the settings and the health checks."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import Any

import click

from fibosms.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    database,
    emit,
    format_status,
    handled,
    json_option,
    publisher,
    settings,
)
from fibosms.cli.params import CODE, DAY, MAX_TIMEOUT, MESSAGE_ID, MOMENT, Seconds

# -- the gateway -------------------------------------------------------------------------


@click.command()
@json_option
@handled
def balance(as_json: bool) -> None:
    """Ask the gateway for the account's balance (SMS left, or VND)."""
    from worker.gateway import FiboClient
    from worker.settings import redact_url
    from worker.watch.report import json_number

    s = settings()
    with FiboClient(s) as client:
        value = client.balance()
    emit(
        {"client_no": s.client_no, "balance": json_number(value), "api_url": redact_url(s.api_url)},
        as_json,
        lambda d: f"balance: {d['balance']}",
    )


@click.command()
@json_option
@handled
def totals(as_json: bool) -> None:
    """Ask the gateway for today's counters (GetTotalMt: success, failed, pending)."""
    from worker.gateway import FiboClient

    with FiboClient(settings()) as client:
        t = client.totals()
    emit(
        {"success": t.success, "failed": t.failed, "pending": t.pending},
        as_json,
        lambda d: f"success: {d['success']}  failed: {d['failed']}  pending: {d['pending']}",
    )


# -- dead letters ------------------------------------------------------------------------


@click.group()
def failures() -> None:
    """Inspect and replay dead letters (the sms_failures table)."""


@failures.command("list")
@click.option("--code", type=CODE, help="Only this FIBO code.")
@click.option("--since", type=MOMENT,
              help="Only failures at or after this date/time (UTC unless given).")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed failures.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@handled
def failures_list(
    code: int | None, since: datetime | None, include_replayed: bool, limit: int, as_json: bool
) -> None:
    """List dead letters, newest first."""
    from worker.inspect import list_failures

    with database().sessions() as session:
        rows = list_failures(
            session, code=code, since=since, include_replayed=include_replayed, limit=limit
        )
    emit(rows, as_json, _format_failures)


def _format_failures(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no failures"
    out = [f"{'message':>8}  {'code':>4}  {'class':<9}  {'attempts':>8}  failed at  meaning"]
    for r in rows:
        code = "-" if r["code"] is None else r["code"]
        out.append(
            f"{r['message_id']:>8}  {code:>4}  {r['class']:<9}  {r['attempts']:>8}  "
            f"{r['failed_at']}  {r['meaning']}"
        )
    return "\n".join(out)


@failures.command("show")
@click.argument("message_id", type=MESSAGE_ID)
@json_option
@handled
def failures_show(message_id: int, as_json: bool) -> None:
    """Show one message with its whole failure history."""
    from worker.inspect import failure_history, message_status

    with database().sessions() as session:
        found = message_status(session, message_id, with_attempts=True)
        history = failure_history(session, message_id)
    if found is None:
        raise CliError(f"no message with id {message_id}", EXIT_NOT_FOUND)
    emit(
        {"message": found, "failures": history},
        as_json,
        lambda d: format_status(d["message"]) + "\n\nfailures:\n" + _format_failures(
            d["failures"]
        ),
    )


@failures.command("replay")
@click.argument("message_ids", type=MESSAGE_ID, nargs=-1)
@click.option("--code", type=CODE, help="Replay every open failure with this FIBO code.")
@json_option
@handled
def failures_replay(message_ids: tuple[int, ...], code: int | None, as_json: bool) -> None:
    """Requeue dead messages with a fresh attempt budget (the history is kept)."""
    if not message_ids and code is None:
        raise CliError("name message ids or --code N", EXIT_USAGE)
    from worker.replay import replay

    ids = replay(database(), publisher(), message_ids=message_ids, code=code)
    skipped = sorted(set(message_ids) - set(ids))
    emit(
        {"replayed": ids, "not_dead": skipped},
        as_json,
        lambda d: f"replayed {len(d['replayed'])} message(s)"
        + (f"; not dead, left alone: {d['not_dead']}" if d["not_dead"] else ""),
    )


# -- the ledger --------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The ledger's database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@handled
def db_upgrade(revision: str) -> None:
    """Run the migrations (safe to run again)."""
    from worker.ledger.migrate import current, upgrade
    from worker.settings import redact_url

    s = settings()
    upgrade(s.database_url, revision)
    click.echo(f"{redact_url(s.database_url)}: at revision {current(s.database_url)}")


@click.command()
@json_option
@handled
def sweep(as_json: bool) -> None:
    """Run one pass of the sweep: recover stalled attempts, publish what the broker lost."""
    from worker.brokerstate import marker_for
    from worker.sweep import sweep as run_sweep

    s = settings()
    report = run_sweep(
        settings=s, db=database(), publisher=publisher(), marker=marker_for(s)
    )
    emit(
        report.as_dict(),
        as_json,
        lambda d: f"recovered {d['recovered']}, published {d['published']}, "
        f"left for later {d['publish_failed']}, forgotten after a broker loss "
        f"{d['broker_lost']}",
    )


# -- the account watch -------------------------------------------------------------------


@click.command()
@click.option("--date", "day", type=DAY,
              help="The Vietnam-local day, YYYY-MM-DD (default: today).")
@json_option
@handled
def report(day: date | None, as_json: bool) -> None:
    """One day of the account watch: our counts, the gateway's, balance, pause, alerts."""
    from worker.clock import now
    from worker.watch.days import vietnam_day
    from worker.watch.report import day_report

    chosen = vietnam_day(now()) if day is None else day
    s = settings()
    with database().sessions() as session:
        data = day_report(session, chosen, tolerance=s.reconcile_tolerance)
    emit(data, as_json, _format_report)


def _format_report(d: dict[str, Any]) -> str:
    local, gw, account = d["local"], d["gateway"], d["account"]
    lines = [
        f"day {d['date']} ({d['timezone']})",
        f"  ledger:  sent {local['sent']}, dead {local['dead']}, in flight {local['in_flight']}",
    ]
    if gw is None:
        lines.append("  gateway: no totals polled for this day")
    else:
        lines.append(
            f"  gateway: success {gw['success']}, failed {gw['failed']}, pending {gw['pending']}"
            f" (polled {gw['polled_at']})"
        )
        verdict = "MISMATCH" if d["mismatch"] else "reconciles"
        lines.append(
            f"  {verdict}: difference {d['difference']:+d} against {local['sent_at_gateway_poll']}"
            f" sent by the poll (tolerance {d['tolerance']})"
        )
    lines.append(
        f"  balance: {d['balance']} (polled {d['balance_polled_at']})"
        if d["balance"] is not None else "  balance: never polled"
    )
    if account["paused"]:
        lines.append(
            f"  PAUSED since {account['since']}: code {account['code']} ({account['reason']});"
            f" resumes {account['resumes']}"
        )
    else:
        lines.append("  sending: active")
    for alert in d["alerts"]:
        lines.append(f"  alert {alert['kind']} since {alert['raised_at']}: {alert['message']}")
    return "\n".join(lines)


@click.command()
@json_option
@handled
def resume(as_json: bool) -> None:
    """Resume sending after an account-wide failure has been fixed."""
    from worker.watch.control import resume_sending

    was_paused, published = resume_sending(
        settings=settings(), db=database(), publisher=publisher()
    )
    emit(
        {"resumed": was_paused, "published": published},
        as_json,
        lambda d: f"resumed; {d['published']} waiting message(s) published"
        if d["resumed"] else "sending was not paused",
    )


# -- the process's view ------------------------------------------------------------------


@click.command(name="settings")
@json_option
@handled
def show_settings(as_json: bool) -> None:
    """Print the effective settings (the password and URL credentials masked)."""
    from worker.brokers import shared_state

    s = settings()
    data = s.redacted()
    # where the rate limit, breaker, beat lock and broker marker live (or their fallback)
    data["shared_state"] = shared_state(s.broker_url, s.redis_url)
    emit(data, as_json, _format_settings)


def _format_settings(d: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, value in d.items():
        if isinstance(value, dict):
            lines.extend(f"{key}.{k}: {v}" for k, v in value.items())
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


@click.command()
@click.option("--check", "checks", metavar="NAME,…",
              help="Only these checks: broker, database, gateway (default: all).")
@click.option("--timeout", type=Seconds(0.1, MAX_TIMEOUT), default=10.0, show_default=True,
              help="Seconds each check may take.")
@json_option
@handled
def health(checks: str | None, timeout: float, as_json: bool) -> None:
    """Check the broker, the database (and its migrations) and the gateway; exit 0 when
    healthy, 1 when not (for liveness and readiness probes)."""
    from worker.health import run_checks

    names = [n.strip() for n in checks.split(",") if n.strip()] if checks else None
    try:
        results = run_checks(settings(), names, timeout=timeout)
    except ValueError as exc:
        raise CliError(f"--check: {exc}", EXIT_USAGE) from None
    healthy = all(r.ok for r in results)
    data = {"healthy": healthy, "checks": {r.name: r.as_dict() for r in results}}
    emit(data, as_json, _format_health)
    sys.exit(0 if healthy else 1)


def _format_health(d: dict[str, Any]) -> str:
    lines = [
        f"{name}: {'ok' if c['ok'] else 'FAILED'} ({c['ms']} ms) {c['detail']}"
        for name, c in d["checks"].items()
    ]
    lines.append("healthy" if d["healthy"] else "unhealthy")
    return "\n".join(lines)


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [
    balance, totals, failures, db, sweep, report, resume, show_settings, health,
]
