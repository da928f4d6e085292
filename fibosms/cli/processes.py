"""The commands that run a long-lived process: Celery's worker and beat, Flower, the metrics
endpoint, the sandbox gateway and the whole local stack (``dev``).

Celery, Flower and the sandbox are imported only by the command that runs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fibosms.cli.output import (
    EXIT_CONFIG,
    EXIT_USAGE,
    PASSTHROUGH,
    CliError,
    handled,
    settings,
)
from fibosms.cli.params import Seconds


@click.command(context_settings=PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handled
def worker(celery_args: tuple[str, ...]) -> None:
    """Celery's worker with this app; Celery's options pass through (-Q, -c, -P, --loglevel)."""
    _celery("worker", celery_args)


@click.command(context_settings=PASSTHROUGH, add_help_option=False)
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


@click.command(context_settings=PASSTHROUGH, add_help_option=False)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@handled
def flower(flower_args: tuple[str, ...]) -> None:
    """Flower for this app, basic auth from FIBOSMS_FLOWER_BASIC_AUTH; Flower's options pass
    through (--port 5555, --address 0.0.0.0, --url_prefix flower). Refuses to start without
    credentials unless given --unauthenticated."""
    from fibosms.celeryapp import make_app
    from fibosms.celeryapp.flower import apply_defaults, auth_problem, normalize_args
    from worker.logs import configure_logging

    args = [a for a in flower_args if a != "--unauthenticated"]
    unauthenticated = len(args) != len(flower_args)
    s = settings()
    problem = auth_problem(s, args, os.environ)
    if problem is not None and not unauthenticated:
        raise CliError(problem, EXIT_CONFIG)
    configure_logging(s)
    if problem is not None:
        click.echo("fibosms: warning: Flower runs WITHOUT authentication (--unauthenticated)",
                   err=True)
    from worker.brokers import has_fanout

    if not has_fanout(s.broker_url):
        click.echo(
            "fibosms: warning: this broker sends no task events; Flower will show no tasks "
            "(use Redis or RabbitMQ: FIBOSMS_BROKER_URL=redis://… or amqp://…)",
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
@handled
def metrics(port: int | None, host: str, once: bool) -> None:
    """Serve Prometheus metrics (text format at /metrics), read from the ledger and the broker
    at each scrape."""
    from prometheus_client import generate_latest

    from worker.ledger.db import Database
    from worker.logs import configure_logging
    from worker.metrics import build_registry
    from worker.metrics.serve import serve_in_thread, serve_until_stopped

    s = settings()
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
@click.option("--port", type=click.IntRange(0, 65535), help="Default: FIBOSMS_SANDBOX_PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--balance", "start_balance", type=click.IntRange(0), default=1_000_000,
              show_default=True, help="Starting balance (messages).")
@click.option("--price", type=click.IntRange(1), default=1, show_default=True,
              help="Balance taken per accepted message.")
@click.option("--script", "scripts", multiple=True, metavar="PHONE=CODE,CODE,…",
              help="Answer these codes, in order, for PHONE ('*' for any number). Repeatable.")
@click.option("--delay", type=Seconds(0, 3600), default=0.0,
              help="Seconds before every answer.")
@click.option("--trickle", type=Seconds(0, 60), default=0.0,
              help="Seconds between the bytes of every answer (a stalling gateway); 0: off.")
@click.option("--verbose", is_flag=True, help="Log every request.")
@handled
def sandbox(
    port: int | None,
    host: str,
    start_balance: int,
    price: int,
    scripts: tuple[str, ...],
    delay: float,
    trickle: float,
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
        trickle=trickle,
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


@click.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Worker threads.")
@handled
def dev(concurrency: int) -> None:
    """Run the whole local stack: migrations, sandbox (no account set), worker and beat."""
    from fibosms.cli.devstack import run_dev_stack

    sys.exit(run_dev_stack(settings(), concurrency=concurrency))


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [worker, beat, flower, metrics, sandbox, dev]
