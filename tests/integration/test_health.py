"""``fibosms health`` against real Redis, PostgreSQL, SQLite and the sandbox gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT

WRONG_PASSWORD = "Wr0ng-Gateway-Pass-ZZQ"
REDIS_PASSWORD = "Redis-Secret-5599"


def health(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "fibosms.cli", "health", "--json", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def test_a_working_deployment_is_healthy(
    stack_env: dict[str, str], pg_url: str, redis_url: str
) -> None:
    code, report, _ = health({**stack_env, "FIBOSMS_DATABASE_URL": pg_url,
                              "FIBOSMS_BROKER_URL": redis_url})
    assert code == 0, report
    assert report["healthy"] is True
    assert set(report["checks"]) == {"broker", "database", "gateway", "polls"}
    assert all(c["ok"] for c in report["checks"].values())
    assert report["checks"]["gateway"]["detail"].startswith("balance ")
    assert "migrations at head" in report["checks"]["database"]["detail"]


def test_a_broker_that_is_down_fails_the_probe_and_shows_no_password(
    stack_env: dict[str, str], pg_url: str
) -> None:
    broker = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    env = {**stack_env, "FIBOSMS_DATABASE_URL": pg_url, "FIBOSMS_BROKER_URL": broker}
    code, report, output = health(env)
    assert code == 1
    assert report["checks"]["broker"]["ok"] is False
    assert report["checks"]["database"]["ok"] is True
    assert REDIS_PASSWORD not in output and SANDBOX_PASSWORD not in output
    # a probe that selects the database alone is not affected
    code, report, _ = health(env, "--check", "database")
    assert (code, list(report["checks"])) == (0, ["database"])


def test_a_database_behind_its_migrations_is_not_ready(
    stack_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    env = {**stack_env, "FIBOSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
           "FIBOSMS_BROKER_URL": redis_url}
    code, report, _ = health(env, "--check", "broker,database")
    assert code == 1
    assert report["checks"]["broker"]["ok"] is True
    assert "fibosms db upgrade" in report["checks"]["database"]["detail"]


def test_a_refused_password_fails_the_gateway_check_without_showing_it(
    stack_env: dict[str, str], pg_url: str, redis_url: str
) -> None:
    env = {**stack_env, "FIBOSMS_DATABASE_URL": pg_url, "FIBOSMS_BROKER_URL": redis_url,
           "FIBOSMS_CLIENT_PASS": WRONG_PASSWORD}
    code, report, output = health(env, "--check", "gateway")
    assert code == 1
    assert report["checks"]["gateway"]["ok"] is False
    assert WRONG_PASSWORD not in output


def test_an_unknown_check_is_a_usage_error(stack_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fibosms.cli", "health", "--check", "broker,dns"],
        cwd=ROOT, env={**os.environ, **stack_env}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "dns" in done.stderr and "Traceback" not in done.stderr


def test_stale_polls_fail_the_polls_check(
    stack_env: dict[str, str], pg_url: str, redis_url: str
) -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from tests.fixtures.services import clean_ledger
    from worker.ledger.db import Database
    from worker.ledger.models import BalancePoll

    db = Database(pg_url)
    clean_ledger(db)
    env = {**stack_env, "FIBOSMS_DATABASE_URL": pg_url, "FIBOSMS_BROKER_URL": redis_url,
           "FIBOSMS_BALANCE_POLL_SECONDS": "60"}
    # Given no poll yet: a fresh deployment is ready
    code, report, _ = health(env, "--check", "polls")
    assert code == 0 and "never polled" in report["checks"]["polls"]["detail"]
    # Given a balance poll older than three intervals and a minute
    with db.transaction() as session:
        session.add(BalancePoll(balance=Decimal(5), polled_at=datetime.now(UTC)
                                - timedelta(seconds=300)))
    code, report, _ = health(env, "--check", "polls")
    assert code == 1
    assert re.search(r"balance poll is 30\d s old \(limit 240 s\)",
                     report["checks"]["polls"]["detail"])
    db.dispose()
