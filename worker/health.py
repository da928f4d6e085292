"""``fibosms health``: is this deployment able to work? Fit for liveness and readiness probes.

Each check is a plain function ``(settings) -> detail`` that raises when unhealthy; the
runner gives each one a deadline in a thread of its own, so a hung dependency makes the
probe fail in time instead of hanging it. Everything the checks use is imported here, up
front: two threads importing SQLAlchemy at once can see it half-initialised. Details never
carry a secret: every one is passed through :func:`worker.logs.redact` with the password
and the URL credentials.

Checks (:data:`CHECKS`, run in this order):

* ``broker``   — connect; Redis ``PING``, other transports a channel
* ``database`` — ``SELECT 1``; the migrations are at head
* ``gateway``  — one GetClientBalance call (costs nothing; keep it out of liveness probes)
* ``polls``    — the last balance and totals polls are no older than three intervals (a
  minute's grace): beat is running. "Never polled" passes, so a fresh deployment is ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from alembic.script import ScriptDirectory
from kombu import Connection  # type: ignore[attr-defined]

from worker import clock
from worker.brokers import is_redis_family
from worker.gateway import FiboClient
from worker.ledger.account import last_polls
from worker.ledger.db import Database
from worker.ledger.migrate import alembic_config
from worker.ledger.views import database_revision
from worker.redisconn import broker_client
from worker.settings import Settings

#: seconds one check may take before it is reported as failed
DEFAULT_TIMEOUT_SECONDS = 10.0
#: seconds to connect to the broker or the database
CONNECT_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    #: milliseconds
    ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "ms": self.ms}


Check = Callable[[Settings], str]


def check_broker(settings: Settings) -> str:
    """Connect to the broker and do one cheap round trip."""
    if is_redis_family(settings.broker_url):
        client = broker_client(settings)
        assert client is not None  # a Redis broker has one
        try:
            client.ping()
        finally:
            client.close()
        return "redis answered PING"
    with Connection(  # type: ignore[no-untyped-call]
        settings.broker_url, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        conn.ensure_connection(max_retries=1)
        conn.default_channel  # noqa: B018 - opening a channel is the round trip
        return f"{conn.transport_cls} transport connected"


def check_database(settings: Settings) -> str:
    """``SELECT 1``, then the Alembic revision against the migrations' head."""
    current = database_revision(settings.database_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    if current != head:
        raise RuntimeError(
            f"migrations not at head (database at {current or 'none'}, code at {head}); "
            "run `fibosms db upgrade`"
        )
    return f"reachable, migrations at head ({head})"


def check_gateway(settings: Settings) -> str:
    """One balance call, no retry: the account and the network work."""
    with FiboClient(settings, read_attempts=1) as client:
        balance = client.balance()
    return f"balance {balance}"


#: a poll older than this many intervals means beat (or the worker running polls) is stuck
STALE_POLL_INTERVALS = 3


def check_polls(settings: Settings) -> str:
    """The last balance and totals polls are recent: beat and the polls are running."""
    db = Database(settings.database_url)
    try:
        with db.sessions() as session:
            polls = last_polls(session)
    finally:
        db.dispose()
    last = {"balance": polls.balance, "totals": polls.totals}
    now = clock.now()
    limits = {
        "balance": settings.balance_poll_seconds * STALE_POLL_INTERVALS + 60,
        "totals": settings.totals_poll_seconds * STALE_POLL_INTERVALS + 60,
    }
    parts = []
    for name, at in last.items():
        if at is None:
            parts.append(f"{name}: never polled")
            continue
        age = (now - at).total_seconds()
        if age > limits[name]:
            raise RuntimeError(
                f"the last {name} poll is {age:.0f} s old (limit {limits[name]:.0f} s): "
                "is beat running?"
            )
        parts.append(f"{name} polled {age:.0f} s ago")
    return "; ".join(parts)


#: name → check, in the order they run; select with ``--check``
CHECKS: dict[str, Check] = {
    "broker": check_broker,
    "database": check_database,
    "gateway": check_gateway,
    "polls": check_polls,
}


def run_checks(
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    checks: dict[str, Check] | None = None,
) -> list[CheckResult]:
    """Run the named checks (all by default) concurrently, each within ``timeout`` seconds."""
    available = CHECKS if checks is None else checks
    chosen = list(available) if not names else list(names)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise ValueError(
            f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(available)}"
        )
    runs = [_Run(name, available[name], settings) for name in chosen]
    for run in runs:
        run.thread.start()
    deadline = time.monotonic() + timeout
    for run in runs:
        run.thread.join(max(0.0, deadline - time.monotonic()))
    return [run.result(timeout) for run in runs]


class _Run:
    """One check in a daemon thread: a hung check cannot keep the process alive."""

    def __init__(self, name: str, check: Check, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.started = time.monotonic()
        self.finished: float | None = None
        self.outcome: tuple[bool, str] | None = None
        self.thread = threading.Thread(
            target=self._target, args=(check,), name=f"health-{name}", daemon=True
        )

    def _target(self, check: Check) -> None:
        try:
            self.outcome = (True, check(self.settings))
        except Exception as exc:
            self.outcome = (False, _describe(exc))
        self.finished = time.monotonic()

    def result(self, timeout: float) -> CheckResult:
        end = self.finished if self.finished is not None else time.monotonic()
        ms = round((end - self.started) * 1000)
        if self.outcome is None:
            return CheckResult(self.name, False, f"no answer within {timeout:g} s", ms)
        ok, detail = self.outcome
        return CheckResult(self.name, ok, _safe(detail, self.settings), ms)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _safe(detail: str, settings: Settings) -> str:
    from worker.gateway.redact import scrub
    from worker.logs import redact

    secrets = [settings.client_pass]
    for url in (settings.database_url, settings.broker_url, settings.redis_url or ""):
        for part in url.split(";"):  # a Sentinel URL names several hosts
            password = urlsplit(part).password
            if password:
                secrets.append(password)
    return redact(scrub(detail, *secrets))
