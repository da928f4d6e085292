"""``fibosms``: the command line. Thin: parse, call a plain function, print.

Exit codes: 0 done; 1 the gateway or the pipeline refused or failed; 2 bad usage or a
message refused at the door; 3 a bad setting; 4 not found.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from worker.errors import FiboError, ValidationError
from worker.settings import Settings, SettingsError, redact_url

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_NOT_FOUND = 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _fail(message: str, code: int, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False))
    click.echo(f"fibosms: error: {message}", err=True)
    sys.exit(code)


def handled(fn: F) -> F:
    """Expected failures become one line on stderr and an exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return fn(*args, **kwargs)
        except SettingsError as exc:
            _fail(f"bad setting: {exc}", EXIT_CONFIG, as_json)
        except ValidationError as exc:
            _fail(f"message refused: {exc}", EXIT_USAGE, as_json)
        except FiboError as exc:
            _fail(f"gateway: {exc}", EXIT_FAILED, as_json)
        except CliError as exc:
            _fail(str(exc), exc.exit_code, as_json)
        except OSError as exc:
            _fail(f"{type(exc).__name__}: {exc.strerror or exc}", EXIT_FAILED, as_json)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    ctx = click.get_current_context()
    cached = ctx.find_root().meta.get("fibosms.settings")
    if cached is None:
        cached = Settings.from_env()
        ctx.find_root().meta["fibosms.settings"] = cached
    return cached


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        click.echo(text(data))


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fibosms")
def main() -> None:
    """fibosms: a durable SMS pipeline for the FIBO gateway.

    Settings come from FIBOSMS_* environment variables (or ./.env). With none set, it runs
    on SQLite files under ./var and talks to the local sandbox gateway (`fibosms sandbox`).
    """


# -- the gateway -------------------------------------------------------------------------


@main.command()
@json_option
@handled
def balance(as_json: bool) -> None:
    """Ask the gateway for the account's balance (SMS left, or VND)."""
    from worker.gateway import FiboClient
    from worker.watch.report import json_number

    s = settings()
    with FiboClient(s) as client:
        value = client.balance()
    emit(
        {"client_no": s.client_no, "balance": json_number(value), "api_url": redact_url(s.api_url)},
        as_json,
        lambda d: f"balance: {d['balance']}",
    )


@main.command()
@json_option
@handled
def totals(as_json: bool) -> None:
    """Ask the gateway for today's counters (GetTotalMt: success, failed, pending)."""
    from worker.gateway import FiboClient

    s = settings()
    with FiboClient(s) as client:
        t = client.totals()
    emit(
        {"success": t.success, "failed": t.failed, "pending": t.pending},
        as_json,
        lambda d: f"success: {d['success']}  failed: {d['failed']}  pending: {d['pending']}",
    )


# -- messages ----------------------------------------------------------------------------


@main.command()
@click.argument("phone")
@click.argument("text")
@click.option("--sender", help="Brand name (default: FIBOSMS_SENDER_NAME).")
@click.option(
    "--kind",
    type=click.Choice(["otp", "transactional", "marketing"]),
    default="transactional",
    show_default=True,
    help="Sets the queue: otp → urgent, transactional → default, marketing → bulk.",
)
@click.option("--key", "idempotency_key", help="Idempotency key: the same key never sends twice.")
@click.option(
    "--unicode/--plain",
    "unicode",
    default=None,
    help="Force serviceType 1 (Unicode) or 0 (plain); chosen from the text by default.",
)
@click.option(
    "--strip-diacritics",
    is_flag=True,
    default=None,
    help="Remove Vietnamese diacritics (đ→d) and send plain, which is cheaper.",
)
@json_option
@handled
def send(
    phone: str,
    text: str,
    sender: str | None,
    kind: str,
    idempotency_key: str | None,
    unicode: bool | None,
    strip_diacritics: bool | None,
    as_json: bool,
) -> None:
    """Accept one SMS for sending; prints its id. A worker sends it."""
    from producer import default_producer

    p = default_producer()
    message_id = p.enqueue_sms(
        phone,
        text,
        sender=sender,
        kind=kind,
        idempotency_key=idempotency_key,
        unicode=unicode,
        strip_diacritics=strip_diacritics,
    )
    emit({"id": message_id}, as_json, lambda d: str(d["id"]))


@main.command()
@click.argument("message_id", type=int)
@json_option
@handled
def status(message_id: int, as_json: bool) -> None:
    """Show one message's status, attempts and last code."""
    from worker.inspect import message_status

    db = _database()
    with db.sessions() as session:
        found = message_status(session, message_id)
    if found is None:
        raise CliError(f"no message with id {message_id}", EXIT_NOT_FOUND)
    emit(found, as_json, _format_status)


def _format_status(d: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in d.items() if v is not None]
    return "\n".join(lines)


# -- dead letters ------------------------------------------------------------------------


@main.group()
def failures() -> None:
    """Inspect and replay dead letters (the sms_failures table)."""


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since must be a date (YYYY-MM-DD) or ISO time, got {value!r}",
                       EXIT_USAGE) from None
    if len(value) == 10:
        parsed = datetime.combine(date.fromisoformat(value), time.min)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@failures.command("list")
@click.option("--code", type=int, help="Only this FIBO code.")
@click.option("--since", help="Only failures at or after this date/time (UTC unless given).")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed failures.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@handled
def failures_list(
    code: int | None, since: str | None, include_replayed: bool, limit: int, as_json: bool
) -> None:
    """List dead letters, newest first."""
    from worker.inspect import list_failures

    since_dt = _parse_since(since)
    db = _database()
    with db.sessions() as session:
        rows = list_failures(
            session, code=code, since=since_dt, include_replayed=include_replayed, limit=limit
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
@click.argument("message_id", type=int)
@json_option
@handled
def failures_show(message_id: int, as_json: bool) -> None:
    """Show one message with its whole failure history."""
    from worker.inspect import failure_history, message_status

    db = _database()
    with db.sessions() as session:
        found = message_status(session, message_id)
        history = failure_history(session, message_id)
    if found is None:
        raise CliError(f"no message with id {message_id}", EXIT_NOT_FOUND)
    data = {"message": found, "failures": history}
    emit(
        data,
        as_json,
        lambda d: _format_status(d["message"]) + "\n\nfailures:\n" + _format_failures(
            d["failures"]
        ),
    )


@failures.command("replay")
@click.argument("message_ids", type=int, nargs=-1)
@click.option("--code", type=int, help="Replay every open failure with this FIBO code.")
@json_option
@handled
def failures_replay(message_ids: tuple[int, ...], code: int | None, as_json: bool) -> None:
    """Requeue dead messages with a fresh attempt budget (the history is kept)."""
    if not message_ids and code is None:
        raise CliError("name message ids or --code N", EXIT_USAGE)
    from worker.replay import replay

    db = _database()
    ids = replay(db, _publisher(), message_ids=message_ids, code=code)
    skipped = sorted(set(message_ids) - set(ids))
    emit(
        {"replayed": ids, "not_dead": skipped},
        as_json,
        lambda d: f"replayed {len(d['replayed'])} message(s)"
        + (f"; not dead, left alone: {d['not_dead']}" if d["not_dead"] else ""),
    )


# -- operations --------------------------------------------------------------------------


@main.group()
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


@main.command()
@json_option
@handled
def sweep(as_json: bool) -> None:
    """Run one pass of the sweep: recover stalled attempts, publish what the broker lost."""
    from worker.sweep import sweep as run_sweep

    report = run_sweep(settings=settings(), db=_database(), publisher=_publisher())
    emit(
        report.as_dict(),
        as_json,
        lambda d: f"recovered {d['recovered']}, published {d['published']}, "
        f"left for later {d['publish_failed']}",
    )


@main.command()
@click.option("--date", "day", help="The Vietnam-local day, YYYY-MM-DD (default: today).")
@json_option
@handled
def report(day: str | None, as_json: bool) -> None:
    """One day of the account watch: our counts, the gateway's, balance, pause, alerts."""
    from worker.watch.days import vietnam_day
    from worker.watch.report import day_report

    if day is None:
        chosen = vietnam_day(datetime.now(UTC))
    else:
        try:
            chosen = date.fromisoformat(day)
        except ValueError:
            raise CliError(f"--date must be YYYY-MM-DD, got {day!r}", EXIT_USAGE) from None
    s = settings()
    with _database().sessions() as session:
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


@main.command()
@json_option
@handled
def resume(as_json: bool) -> None:
    """Resume sending after an account-wide failure has been fixed."""
    from worker.watch.control import resume_sending

    was_paused, published = resume_sending(
        settings=settings(), db=_database(), publisher=_publisher()
    )
    emit(
        {"resumed": was_paused, "published": published},
        as_json,
        lambda d: f"resumed; {d['published']} waiting message(s) published"
        if d["resumed"] else "sending was not paused",
    )


@main.command(name="settings")
@json_option
@handled
def show_settings(as_json: bool) -> None:
    """Print the effective settings (the password and URL credentials masked)."""
    data = settings().redacted()
    emit(data, as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                "help_option_names": []}


@main.command(context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handled
def worker(celery_args: tuple[str, ...]) -> None:
    """Celery's worker with this app; Celery's options pass through (-Q, -c, -P, --loglevel)."""
    _celery("worker", celery_args)


@main.command(context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handled
def beat(celery_args: tuple[str, ...]) -> None:
    """Celery's beat with this app (the sweep's schedule); Celery's options pass through."""
    _celery("beat", celery_args)


def _celery(command: str, args: tuple[str, ...]) -> None:
    from fibosms.celeryapp import make_app
    from worker.logs import configure_logging

    s = settings()
    configure_logging(s)
    if command == "beat":
        # beat keeps its schedule file there; with PostgreSQL and Redis nothing else creates it
        Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    app = make_app(s)
    app.start([command, *args])


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), help="Default: FIBOSMS_SANDBOX_PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--balance", "start_balance", type=click.IntRange(0), default=1_000_000,
              show_default=True, help="Starting balance (messages).")
@click.option("--price", type=click.IntRange(1), default=1, show_default=True,
              help="Balance taken per accepted message.")
@click.option("--script", "scripts", multiple=True, metavar="PHONE=CODE,CODE,…",
              help="Answer these codes, in order, for PHONE ('*' for any number). Repeatable.")
@click.option("--delay", type=click.FloatRange(0), default=0.0, help="Seconds before every answer.")
@click.option("--verbose", is_flag=True, help="Log every request.")
@handled
def sandbox(
    port: int | None,
    host: str,
    start_balance: int,
    price: int,
    scripts: tuple[str, ...],
    delay: float,
    verbose: bool,
) -> None:
    """Run the sandbox gateway: FIBO's API on your machine, no money spent.

    It accepts the FIBOSMS_CLIENT_NO / FIBOSMS_CLIENT_PASS account (the demo account when
    unset), so `fibosms balance` with the same environment talks to it.
    """
    from worker.sandbox import SandboxServer, parse_script_arg

    s = settings()
    try:
        parsed = [parse_script_arg(arg) for arg in scripts]
    except ValueError as exc:
        raise CliError(f"--script: {exc}", EXIT_USAGE) from None
    server = SandboxServer.from_settings(
        s,
        host=host,
        port=s.sandbox_port if port is None else port,
        balance=start_balance,
        price=price,
        delay=delay,
        scripts=parsed,
        verbose=verbose,
    ).bind()
    click.echo(
        f"sandbox gateway on http://{host}:{server.port} for account {s.client_no}"
        f" (balance {start_balance}); control endpoint /_sandbox/ — Ctrl-C stops it",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
@click.option("--concurrency", "-c", type=click.IntRange(1), default=4, show_default=True,
              help="Worker threads.")
@handled
def dev(concurrency: int) -> None:
    """Run the whole local stack: migrations, sandbox (no account set), worker and beat."""
    from producer.devstack import run_dev_stack

    sys.exit(run_dev_stack(settings(), concurrency=concurrency))


def _attach_operator_commands() -> None:
    from producer.cli_ops import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_attach_operator_commands()


def _database() -> Any:
    from worker.ledger.db import Database

    return Database(settings().database_url)


def _publisher() -> Any:
    from fibosms.celeryapp import make_app, publisher_for

    return publisher_for(make_app(settings()))


if __name__ == "__main__":  # pragma: no cover
    main()
