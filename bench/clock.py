"""What reading the database's clock costs: one round trip per transaction that needs it.

The worker reads it twice per message (the claim, the record), a producer once per enqueue,
the sweep once per pass. This measures one read on PostgreSQL and SQLite, inside a
transaction as the pipeline does it, beside an empty ``SELECT 1`` on the same connection.

    .venv/bin/python -m bench.clock [--pg-url URL] [--reads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

from sqlalchemy import text

from bench.common import require_loopback_url
from worker.ledger.clock import database_now
from worker.ledger.db import Database


def _timed(db: Database, read: Callable[..., object], reads: int) -> list[float]:
    """Microseconds of each ``read`` inside an open transaction."""
    samples: list[float] = []
    with db.transaction() as session:
        read(session)  # the connection is open and the statement compiled
        for _ in range(reads):
            start = time.perf_counter()
            read(session)
            samples.append((time.perf_counter() - start) * 1e6)
    return samples


def _select_one(session: object) -> object:
    return session.execute(text("SELECT 1")).scalar_one()  # type: ignore[attr-defined]


def measure(url: str, reads: int) -> dict[str, float]:
    db = Database(url)
    try:
        clock = _timed(db, database_now, reads)
        plain = _timed(db, _select_one, reads)
    finally:
        db.dispose()
    q = statistics.quantiles
    return {
        "clock_p50_us": round(statistics.median(clock), 1),
        "clock_p99_us": round(q(clock, n=100)[98], 1),
        "select1_p50_us": round(statistics.median(plain), 1),
        "select1_p99_us": round(q(plain, n=100)[98], 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--reads", type=int, default=5000)
    args = p.parse_args(argv)
    require_loopback_url("--pg-url", args.pg_url)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "postgresql": measure(args.pg_url, args.reads),
            "sqlite": measure(f"sqlite:///{tmp}/clock.db", args.reads),
        }
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.reads} reads")
    for backend, r in results.items():
        print(f"{backend:10} database_now p50 {r['clock_p50_us']:7.1f} µs  p99 "
              f"{r['clock_p99_us']:7.1f} µs   SELECT 1 p50 {r['select1_p50_us']:7.1f} µs  p99 "
              f"{r['select1_p99_us']:7.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
