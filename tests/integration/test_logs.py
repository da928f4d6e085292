"""A real worker started by Celery's own command logs through fibosms: one JSON object per
event with the message's context, and no number, text or password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.stack import ROOT, Stack, statuses, wait_for

PHONE = "0968551234"
TEXT = "Log-canary-text 51c2 don hang"


def json_records(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))  # every JSON-looking line is whole JSON
    return out


def test_celery_worker_writes_json_lines_with_context_and_no_secrets(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url, FIBOSMS_LOG_FORMAT="json")
    clean_ledger(stack.db)
    log = tmp_path / "celery-worker.log"
    args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads",
            "--concurrency", "2", "--loglevel", "INFO", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "--hostname", f"logs-{uuid.uuid4().hex[:6]}@%h"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **stack.env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited {proc.returncode}:\n{log.read_text()}")
            return any(r["message"].endswith(" ready.") for r in json_records(log))

        wait_for(ready, timeout=30)
        mid = stack.producer.enqueue_sms(PHONE, TEXT, kind="otp")
        wait_for(lambda: statuses(stack.db, [mid]) == {mid: "sent"}, timeout=30)

        def attempt_logged() -> Any:
            return [r for r in json_records(log) if r.get("message_id") == mid
                    and r.get("status") == "sent"]

        [attempt] = wait_for(attempt_logged, timeout=10)
        assert (attempt["attempt"], attempt["code"], attempt["logger"]) == (
            1, 200, "fibosms.send"
        )
        assert "0968***234" in attempt["message"]
        [call] = [r for r in json_records(log) if r.get("fibo_op") == "send"]
        assert (call["fibo_phone"], call["fibo_outcome"], call["fibo_code"]) == (
            "0968***234", "ok", 200
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    written = log.read_text(errors="replace")
    for forbidden in (PHONE, "84" + PHONE[1:], PHONE[1:], TEXT, "Log-canary", SANDBOX_PASSWORD):
        assert forbidden not in written, forbidden
