"""The console's pages on a ledger of 1,000,000 messages in PostgreSQL (issue 12: each
under 300 ms).

    python -m bench.console                   # ~1–2 minutes, most of it making the rows
    python -m bench.console --rows 200000 --repeat 10 --json

A database of its own (``--database``, dropped and made again, migrated to the newest
revision) is filled in SQL: ``--rows`` messages over 30 days (97 % sent, 1 % dead with their
dead letters, the rest queued, retrying or expired; a third each OTP, transactional and
marketing; the marketing ones in ten campaigns and a small old one), 50,000 suppressed
numbers, a balance poll every five minutes for a week, hourly totals polls and 14 daily
reconciliations. The app is served by uvicorn in this process on 127.0.0.1 (the sandbox
broker: no worker and no Redis needed); an operator signs in, and each page is fetched
``--repeat`` times after two warm-ups: the median, the 95th percentile and the slowest, and
whether the slowest is under ``--target-ms``. Exit 1 when a page misses it.

Loopback only. Nothing here is imported by the product or the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import BenchError, free_port, percentile

FILL = """
INSERT INTO sms_messages (recipient, text, sender, service_type, segments, kind, queue, status,
    attempts, ambiguous_attempts, claims, attempts_at_replay, last_code, next_attempt_at,
    published_at, created_at, first_attempt_at, sent_at, updated_at, campaign)
SELECT '09' || lpad((g % 100000000)::text, 8, '0'), 'Ma OTP cua ban la 123456', NULL, 1, 1,
    (ARRAY['otp','transactional','marketing'])[g % 3 + 1],
    (ARRAY['urgent','default','bulk'])[g % 3 + 1],
    CASE WHEN g % 100 < 97 THEN 'sent' WHEN g % 100 = 97 THEN 'dead'
         WHEN g % 100 = 98 THEN 'queued' WHEN g % 200 = 99 THEN 'retrying'
         ELSE 'expired' END,
    1, 0, 1, 0, CASE WHEN g % 100 = 97 THEN 5 ELSE 0 END,
    t, t, t, t, CASE WHEN g % 100 < 97 THEN t + interval '2 seconds' END, t,
    -- marketing rows in campaigns of :rows / 10 rows each, and a small one among the oldest
    CASE WHEN g % 3 = 2 AND g <= 600 THEN 'tiny'
         WHEN g % 3 = 2 THEN 'camp-' || (g * 10 / :rows) END
FROM (SELECT g, now() - (:rows - g) * (interval '30 days' / :rows) AS t
      FROM generate_series(1, :rows) AS g) AS s
"""
FAILURES = """
INSERT INTO sms_failures (message_id, code, meaning, class, attempts, failed_at)
SELECT id, 5, 'brand name / service not registered', 'permanent', 1,
       created_at + interval '2 seconds'
FROM sms_messages WHERE status = 'dead'
"""
CAMPAIGNS = """
INSERT INTO sms_campaigns (name, created_at)
SELECT campaign, min(created_at) FROM sms_messages WHERE campaign IS NOT NULL GROUP BY campaign;
INSERT INTO sms_suppressions (phone, reason, source, created_at)
SELECT '09' || lpad((g * 7919 % 100000000)::text, 8, '0'), 'STOP', 'import', now()
FROM generate_series(1, 50000) AS g ON CONFLICT DO NOTHING;
"""
POLLS = """
INSERT INTO fibo_balance_history (balance, polled_at)
SELECT 5000000 - g * 400, now() - (2016 - g) * interval '5 minutes'
FROM generate_series(0, 2015) AS g;
INSERT INTO fibo_totals_history (day, success, failed, pending, polled_at)
SELECT (now() - g * interval '1 hour')::date, 30000, 10, 0, now() - g * interval '1 hour'
FROM generate_series(0, 167) AS g;
INSERT INTO fibo_reconciliations (day, local_sent, local_dead, local_in_flight,
    gateway_success, gateway_failed, gateway_pending, difference, mismatch, checked_at)
SELECT (now() - g * interval '1 day')::date, 32000, 330, 10, 32000, 5, 0, 5, false, now()
FROM generate_series(0, 13) AS g;
"""


def fresh_database(admin_url: str, name: str) -> str:
    from worker.ledger.migrate import upgrade

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BenchError(f"--database must be a plain lower-case name, got {name!r}")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


def fill(url: str, rows: int) -> float:
    started = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(FILL), {"rows": rows})
        conn.execute(text(FAILURES))
        for statement in (POLLS + CAMPAIGNS).split(";"):
            if statement.strip():
                conn.execute(text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def serve(url: str, tmp: str) -> tuple[str, Any]:
    import uvicorn

    from fibosms.web import create_app
    from worker.settings import Settings

    settings = Settings.from_env({
        "FIBOSMS_DATABASE_URL": url, "FIBOSMS_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db",
        "FIBOSMS_DATA_DIR": tmp, "FIBOSMS_ENV_FILE": os.path.join(tmp, "none.env"),
    })
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           access_log=False, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise BenchError("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def measure(base: str, url: str, repeat: int) -> dict[str, dict[str, float | None]]:
    import httpx

    from worker.clock import now
    from worker.ledger.db import Database
    from worker.ledger.operators import add_operator

    db = Database(url)
    with db.transaction() as session:
        add_operator(session, "bench", "bench-password", role="operator", now=now())
    db.dispose()
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    client.post("/console/login", data={"username": "bench", "password": "bench-password",
                                        "csrf_token": token.group(1)})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/").text)
    assert csrf is not None
    asks: dict[str, Any] = {
        "overview": lambda: client.get("/console/"),
        "messages": lambda: client.get("/console/messages"),
        "search by phone": lambda: client.post("/console/messages", data={
            "csrf_token": csrf.group(1), "phone": "+84 900 012 345"}),
        "search dead otp": lambda: client.post("/console/messages", data={
            "csrf_token": csrf.group(1), "status": "dead", "kind": "otp"}),
        "message": lambda: client.get("/console/messages/500000"),
        "dead letters": lambda: client.get("/console/failures"),
        "dead letters code 5": lambda: client.get("/console/failures?code=5&class=permanent"),
        "replay confirmation": lambda: client.get("/console/failures?code=5&confirm=code"),
        "account": lambda: client.get("/console/account"),
        "campaigns": lambda: client.get("/console/campaigns"),
        "search campaign": lambda: client.get("/console/messages?campaign=camp-5"),
        "search tiny campaign": lambda: client.get("/console/messages?campaign=tiny"),
        "suppressions": lambda: client.get("/console/suppressions"),
        "suppression look-up": lambda: client.post("/console/suppressions", data={
            "csrf_token": csrf.group(1), "lookup": "0900007919"}),
    }
    out: dict[str, dict[str, float | None]] = {}
    for name, ask in asks.items():
        times = []
        for i in range(repeat + 2):
            started = time.perf_counter()
            answer = ask()
            took = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise BenchError(f"{name}: HTTP {answer.status_code}")
            if i >= 2:
                times.append(took)
        out[name] = {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
                     "max_ms": max(times)}
    client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--target-ms", type=float, default=300.0)
    parser.add_argument("--database", default="fibosms_bench_console")
    parser.add_argument("--pg-admin-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    url = fresh_database(args.pg_admin_url, args.database)
    filled = fill(url, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        base, server = serve(url, tmp)
        try:
            pages = measure(base, url, args.repeat)
        finally:
            server.should_exit = True
    slow = [n for n, p in pages.items() if (p["max_ms"] or 0) > args.target_ms]
    if args.json:
        print(json.dumps({"rows": args.rows, "fill_seconds": round(filled, 1),
                          "target_ms": args.target_ms, "pages": pages, "slow": slow}, indent=2))
    else:
        print(f"{args.rows:,} messages made in {filled:.1f} s; each page {args.repeat} times")
        print(f"{'page':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
        for name, p in pages.items():
            print(f"{name:<22}{p['p50_ms'] or 0:>9.1f}{p['p95_ms'] or 0:>9.1f}"
                  f"{p['max_ms'] or 0:>9.1f}")
        print("every page under" if not slow else "OVER", f"{args.target_ms:.0f} ms",
              *(["—", ", ".join(slow)] if slow else []))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
