"""Operators' commands (Flower, metrics, health), attached to ``fibosms`` by producer.cli.

producer.cli imports this module at its end; the helpers of producer.cli are imported when
a command runs, so importing this module first works as well.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                "help_option_names": []}


def _handled(fn: F) -> F:
    """producer.cli's error handling: one line on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from producer.cli import handled

        return handled(fn)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _settings() -> Any:
    from producer.cli import settings

    return settings()


def _fail(message: str, exit_code: int) -> Exception:
    from producer.cli import CliError

    return CliError(message, exit_code)


@click.command(context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@_handled
def flower(flower_args: tuple[str, ...]) -> None:
    """Flower for this app, basic auth from FIBOSMS_FLOWER_BASIC_AUTH; Flower's options pass
    through (--port 5555, --address 0.0.0.0, --url_prefix flower). Refuses to start without
    credentials unless given --unauthenticated."""
    from fibosms.celeryapp import make_app
    from fibosms.celeryapp.flower import apply_defaults, auth_problem, normalize_args
    from producer.cli import EXIT_CONFIG
    from worker.logs import configure_logging

    args = [a for a in flower_args if a != "--unauthenticated"]
    unauthenticated = len(args) != len(flower_args)
    s = _settings()
    problem = auth_problem(s, args, os.environ)
    if problem is not None and not unauthenticated:
        raise _fail(problem, EXIT_CONFIG)
    configure_logging(s)
    if problem is not None:
        click.echo("fibosms: warning: Flower runs WITHOUT authentication (--unauthenticated)",
                   err=True)
    if not s.broker_url.startswith(("redis://", "rediss://")):
        click.echo(
            "fibosms: warning: this broker sends no task events; Flower will show no tasks "
            "(use Redis: FIBOSMS_BROKER_URL=redis://…)",
            err=True,
        )
    apply_defaults(s)
    app = make_app(s)
    sys.exit(app.start(["flower", *normalize_args(args)]) or 0)


@click.command()
@click.option("--port", type=click.IntRange(0, 65535),
              help="Default: FIBOSMS_METRICS_PORT (9808); 0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--once", is_flag=True, help="Print one scrape on stdout and exit.")
@_handled
def metrics(port: int | None, host: str, once: bool) -> None:
    """Serve Prometheus metrics (text format at /metrics), read from the ledger and the broker
    at each scrape."""
    from prometheus_client import generate_latest

    from worker.ledger.db import Database
    from worker.logs import configure_logging
    from worker.metrics import build_registry
    from worker.metrics.serve import serve_in_thread, serve_until_stopped

    s = _settings()
    configure_logging(s)
    db = Database(s.database_url)
    try:
        registry = build_registry(s, db)
        if once:
            click.echo(generate_latest(registry).decode("utf-8"), nl=False)
            return
        server = serve_in_thread(registry, host=host, port=s.metrics_port if port is None
                                 else port)
        click.echo(
            f"metrics on http://{host}:{server.server_port}/metrics — Ctrl-C stops", err=True
        )
        serve_until_stopped(server)
    finally:
        db.dispose()


@click.command()
@click.option("--check", "checks", metavar="NAME,…",
              help="Only these checks: broker, database, gateway (default: all).")
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds each check may take.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_handled
def health(checks: str | None, timeout: float, as_json: bool) -> None:
    """Check the broker, the database (and its migrations) and the gateway; exit 0 when
    healthy, 1 when not (for liveness and readiness probes)."""
    from producer.cli import EXIT_USAGE, emit
    from worker.health import run_checks

    names = [n.strip() for n in checks.split(",") if n.strip()] if checks else None
    try:
        results = run_checks(_settings(), names, timeout=timeout)
    except ValueError as exc:
        raise _fail(f"--check: {exc}", EXIT_USAGE) from None
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


#: the commands producer.cli adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [flower, metrics, health]
