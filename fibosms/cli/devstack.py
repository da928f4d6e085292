"""``fibosms dev`` / ``make run``: the whole local stack in one terminal.

Migrations, then the sandbox gateway (when no account is configured), one worker and
beat as child processes sharing this environment. Ctrl-C stops them all; if one dies,
the others are stopped and the exit code says so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import click

from worker.ledger.migrate import upgrade
from worker.settings import Settings, redact_url


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _fibosms(*args: str) -> list[str]:
    return [sys.executable, "-m", "fibosms.cli", *args]


def run_dev_stack(settings: Settings, *, concurrency: int = 4) -> int:
    upgrade(settings.database_url)
    click.echo(f"ledger: {redact_url(settings.database_url)} (migrated)", err=True)
    click.echo(f"broker: {redact_url(settings.broker_url)}", err=True)

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    if settings.using_sandbox:
        if _port_open("127.0.0.1", settings.sandbox_port):
            click.echo(f"sandbox: already listening on port {settings.sandbox_port}", err=True)
        else:
            children.append(("sandbox", subprocess.Popen(_fibosms("sandbox"))))  # noqa: S603
            deadline = time.monotonic() + 10
            while not _port_open("127.0.0.1", settings.sandbox_port):
                if time.monotonic() > deadline or children[0][1].poll() is not None:
                    _stop(children)
                    click.echo("sandbox did not start", err=True)
                    return 1
                time.sleep(0.1)
    else:
        click.echo(f"gateway: {settings.api_url} (account {settings.client_no})", err=True)

    worker_args = ["worker", "--loglevel", "INFO", "--pool", "threads",
                   "--concurrency", str(concurrency), "--without-heartbeat",
                   "--without-gossip", "--without-mingle"]
    children.append(("worker", subprocess.Popen(_fibosms(*worker_args))))  # noqa: S603
    children.append(
        ("beat", subprocess.Popen(_fibosms("beat", "--loglevel", "INFO")))  # noqa: S603
    )
    click.echo(
        "\nrunning. In another terminal (same directory and environment):\n"
        "  .venv/bin/fibosms send 0912345678 'Xin chao! Ma OTP cua ban la 123456' --kind otp\n"
        "  .venv/bin/fibosms status 1\n"
        "  .venv/bin/fibosms balance\n"
        "Ctrl-C stops the stack.\n",
        err=True,
    )
    # Ctrl-C reaches every process of the terminal's group; SIGTERM (kill, timeout, a
    # service manager) and SIGHUP (a closed terminal) reach this one alone: all three stop
    # the stack, or its children would run on without it
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    click.echo(f"{name} exited with {proc.returncode}; stopping", err=True)
                    _stop(children)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
        _stop(children)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, proc in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
