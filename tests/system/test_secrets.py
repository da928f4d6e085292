"""No secret leaks, and full numbers stay in one column.

A run with a distinctive password (with characters that URL encoding changes) through a real
worker and beat at DEBUG level, on a broker and a ledger of the test's own, with messages to
twenty numbers meeting every outcome: sent, retried (code 2, HTTP 502, a dropped
connection, the gateway refusing connections for a while), dead-lettered (code 5), and a
proxy page that echoes the password back. Then the worker's and beat's logs, the command
line's output, every Redis key and value, and every column of every table are searched:
the password appears nowhere, and a full number only in ``sms_messages.recipient``. (The
sandbox's own records are the gateway's side, not ours, and are not searched.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT, Stack
from tests.system.infra import PrivateRedis, count_by_status
from tests.system.leaks import database_haystacks, find_leaks, redis_haystacks
from worker.ledger.migrate import upgrade
from worker.sandbox import SandboxServer

pytestmark = pytest.mark.system

PASSWORD = "Zq9 LEAK+canary&x=1%2F/Đ"
CLIENT_NO = "CLLEAKTEST9"


def wait_until_settled(stack: Stack, total: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = count_by_status(stack.db)
        if counts.get("sent", 0) + counts.get("dead", 0) == total:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.timeout(120)
def test_the_password_leaks_nowhere_and_numbers_stay_in_the_recipient_column(
    make_stack: Callable[..., Stack],
    private_redis: PrivateRedis,
    tmp_path: Path,
    beat: Callable[[Stack], Path],
    figures: dict[str, Any],
) -> None:
    rng = random.Random(7)
    phones = [f"09{rng.choice('134678')}{rng.randrange(10**7):07d}" for _ in range(20)]
    gateway = SandboxServer(CLIENT_NO, PASSWORD, port=free_port()).start()
    try:
        db_url = f"sqlite:///{tmp_path}/ledger.db"
        upgrade(db_url)
        stack = make_stack(
            db_url, private_redis.url,
            FIBOSMS_API_URL=gateway.url, FIBOSMS_CLIENT_NO=CLIENT_NO, FIBOSMS_CLIENT_PASS=PASSWORD,
            FIBOSMS_LOG_LEVEL="DEBUG", FIBOSMS_SWEEP_SECONDS="1", FIBOSMS_BREAKER_THRESHOLD="0",
            FIBOSMS_BALANCE_POLL_SECONDS="1", FIBOSMS_TOTALS_POLL_SECONDS="1",
        )
        # every outcome, so every error path writes what it writes
        gateway.script(phones[0], [{"code": 2}, {"code": 2}])
        gateway.script(phones[1], [{"code": 5}])
        gateway.script(phones[2], [{"http": 502}])
        gateway.script(phones[3], [{"drop": True}])
        gateway.script(phones[4], [{"body": f"<html>GET /SendMaskedSMS?clientPass={PASSWORD}"
                                            f"&phoneNumber={phones[4]}</html>", "status": 500}])
        gateway.script(phones[5], [{"body": f"<string>{PASSWORD}</string>", "status": 200}])
        worker_log = stack.start_worker("--loglevel", "DEBUG", concurrency=4)
        beat_log = beat(stack)
        kinds = ["otp", "transactional", "marketing"]
        ids = [
            stack.producer.enqueue_sms(p, f"Ma xac nhan {i:04d}", kind=kinds[i % 3])
            for i, p in enumerate(phones)
        ]
        places: dict[str, str] = {}
        places.update(
            {f"mid-run {k}": v for k, v in redis_haystacks(private_redis.client()).items()}
        )
        # the gateway refusing connections for a moment (errors that could carry the URL); the
        # same server listens again on the same port, so the scripts the worker did not reach
        # before the cut still answer afterwards (a fresh server would forget them)
        gateway.stop()
        later = [stack.producer.enqueue_sms(p, f"Ma xac nhan {i:04d}b", kind="otp")
                 for i, p in enumerate(phones[6:10])]
        time.sleep(3)
        gateway.start()
        all_ids = ids + later
        settled = wait_until_settled(stack, len(all_ids), timeout=60)
        assert settled, "the run did not settle: every message should end sent or dead"
        places.update(
            {f"end {k}": v for k, v in redis_haystacks(private_redis.client()).items()}
        )

        # the command line's views of the same run
        env = {**os.environ, **stack.env}
        for args in (["status", str(ids[1]), "--json"], ["failures", "list", "--json"],
                     ["settings", "--json"], ["status", str(ids[4])]):
            done = subprocess.run(
                [sys.executable, "-m", "fibosms.cli", *args], cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=60, check=False,
            )
            places[f"fibosms {' '.join(args)}"] = done.stdout + done.stderr
        stack.stop_workers()
    finally:
        gateway.stop()

    places["worker log"] = worker_log.read_text(errors="replace")
    places["beat log"] = beat_log.read_text(errors="replace")
    places.update(database_haystacks(stack.db))
    leaks = find_leaks(places, PASSWORD, phones, phones_allowed_in=["sms_messages.recipient"])
    assert leaks == [], "secrets or full numbers leaked:\n" + "\n".join(leaks)

    # and the search looked where it should, and would have seen a leak: the numbers are
    # in the one column, the run sent (so the password went out) and dead-lettered, the
    # logs are at DEBUG and talk about the masked numbers
    assert find_leaks({"probe": f"x?clientPass={quote_plus(PASSWORD)}&"}, PASSWORD, []) != []
    assert find_leaks({"probe": f"to 84{phones[0][1:]}"}, PASSWORD, phones) != []
    counts = count_by_status(stack.db)
    assert counts.get("sent", 0) >= 10 and counts.get("dead", 0) >= 1, counts
    assert " DEBUG " in places["worker log"]
    assert all(p in places["sms_messages.recipient"] for p in phones)
    assert any(k.startswith("end redis") for k in places)
    assert "sms_failures.meaning" in places and places["sms_failures.meaning"].strip()
    assert f"{phones[1][:4]}***{phones[1][-3:]}" in places["worker log"]
    figures.update(
        messages=len(all_ids), numbers=len(phones),
        places_searched=len(places),
        redis_keys=sum(1 for k in places if "key name" in k),
        log_bytes=len(places["worker log"]) + len(places["beat log"]),
        leaks=0,
    )
