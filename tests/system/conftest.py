"""Fixtures of the system tier: private services, beat, a sandbox that restarts on its port.

Each test records the figures it measured (``figures`` fixture); they are printed at the end
of the run under "system tier: measured figures".
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import SANDBOX_CLIENT_NO, SANDBOX_PASSWORD
from tests.fixtures.services import free_port, require
from tests.fixtures.stack import Stack
from tests.system.infra import (
    PrivatePostgres,
    PrivateRedis,
    pg_bindir,
    start_beat,
    stop_process,
)
from worker.sandbox import SandboxServer


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox on a fixed free port, so that stop() then start() listens there again."""
    server = SandboxServer(SANDBOX_CLIENT_NO, SANDBOX_PASSWORD, port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own (the shared one on 6379 is never stopped or flushed)."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = PrivateRedis(tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, in a temporary directory."""
    bindir = pg_bindir()
    require(bindir is not None, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    cluster = PrivatePostgres(bindir)
    try:
        yield cluster.init()
    finally:
        cluster.destroy()


@pytest.fixture
def beat() -> Iterator[Callable[[Stack], Path]]:
    """Start ``fibosms beat`` for a stack; returns its log. Stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(stack: Stack) -> Path:
        proc, log = start_beat(stack, name=f"beat-{len(started)}")
        started.append(proc)
        return log

    try:
        yield start
    finally:
        for proc in started:
            stop_process(proc)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What the test measured; shown in the run's summary."""
    found: dict[str, Any] = {}
    yield found
    if found:
        request.node.user_properties.append(("figures", json.dumps(found, default=str)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", []):
                if name == "figures":
                    lines.append(f"{report.nodeid.split('::')[-1]}: {value}")
    if lines:
        terminalreporter.section("system tier: measured figures")
        for line in sorted(set(lines)):
            terminalreporter.write_line(line)
