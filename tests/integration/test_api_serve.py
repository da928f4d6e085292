"""``fibosms serve`` as operators run it: a process of its own with two server processes
behind one port, its log and its metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.fixtures.api import make_token
from tests.fixtures.services import clean_ledger, free_port
from tests.fixtures.stack import Stack, wait_for

PHONE = "0912345678"


def test_two_server_processes_share_a_port_log_no_numbers_and_sum_their_metrics(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Given `fibosms serve --workers 2`, with Prometheus' multiprocess directory
    stack = make_stack(pg_url, redis_url, FIBOSMS_LOG_FORMAT="json")
    clean_ledger(stack.db)
    token = make_token(stack.db, "shop", "send", "read")
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, **stack.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "fibosms.cli", "serve", "--port", str(port),
             "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        # When messages are posted and read over new connections (spread over both processes)
        ids = []
        for i in range(20):
            with httpx.Client(base_url=base, timeout=10,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                r = client.post("/v1/messages", json={"phone": PHONE, "text": f"m{i}"})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
                client.get("/v1/messages", params={"phone": "+84912345678"})
        scrape = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
    # Then every request is counted once, whichever process served the scrape
    posted = re.search(
        r'fibosms_api_requests_total\{method="POST",route="/v1/messages",status="201"\} (\S+)',
        scrape,
    )
    assert posted is not None and float(posted.group(1)) == 20.0
    assert len(set(ids)) == 20
    # and the log holds one JSON access line per request, with no number and no token
    text = log_path.read_text()
    access = [json.loads(line) for line in text.splitlines()
              if line.startswith("{") and "fibosms.api.access" in line]
    assert len(access) >= 40
    assert PHONE not in text and "912345678" not in text and token not in text
    assert "Traceback" not in text
    assert {(a["level"], a["logger"]) for a in access} == {("INFO", "fibosms.api.access")}
    assert any("POST /v1/messages 201" in a["message"] and "key=shop" in a["message"]
               for a in access)
