"""How long ``campaign send`` takes for a big CSV: read, check every row, accept in batches.

    .venv/bin/python -m bench.campaign_import                 # 100,000 rows, PostgreSQL + Redis
    .venv/bin/python -m bench.campaign_import --rows 20000 --sqlite

The rows go through the same function the command line calls (:func:`worker.campaigns.
send_campaign`), into a database of its own (dropped at the end) and, with Redis, through
the real publisher into a Redis database number it claims the way the test suite does. The
target (issue 13): 100,000 rows in under a minute. A second run of the same file is timed
too: it must accept nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import require_loopback_url

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OWNER_KEY = "fibosms-test:owner"


def make_csv(rows: int) -> bytes:
    """``rows`` distinct mobile numbers with a name column, for a ``{name}`` template."""
    lines = ["phone,name"]
    lines.extend(f"09{13000000 + i:08d},Khach hang {i}" for i in range(rows))
    return ("\n".join(lines) + "\n").encode()


def claim_redis_db(host: str, port: int) -> tuple[Any, int]:
    import redis

    owner = f"bench:{socket.gethostname()}:{os.getpid()}"
    for number in range(1, 16):
        client = redis.Redis(host=host, port=port, db=number)
        if client.set(OWNER_KEY, owner, nx=True, ex=3600):
            return client, number
        client.close()
    raise SystemExit("every Redis database 1-15 is taken; try again later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite ledger and broker files")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN)
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from fibosms.celeryapp import make_app, publisher_for
    from worker.campaigns import send_campaign
    from worker.ledger.db import Database
    from worker.ledger.migrate import upgrade
    from worker.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="fibosms-bench-campaign-"))
    env = {"FIBOSMS_DATA_DIR": str(tmp), "FIBOSMS_ENV_FILE": str(tmp / "none.env")}
    admin = None
    name = f"fibosms_bench_campaign_{uuid.uuid4().hex[:8]}"
    redis_client = None
    if args.sqlite:
        env["FIBOSMS_DATABASE_URL"] = f"sqlite:///{tmp / 'ledger.db'}"
        env["FIBOSMS_BROKER_URL"] = f"sqla+sqlite:///{tmp / 'broker.db'}"
    else:
        require_loopback_url("--pg-admin-url", args.pg_admin_url)
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        env["FIBOSMS_DATABASE_URL"] = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
        redis_client, number = claim_redis_db("127.0.0.1", 6379)
        env["FIBOSMS_BROKER_URL"] = f"redis://127.0.0.1:6379/{number}"
    try:
        settings = Settings.from_env(env)
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        publisher = publisher_for(make_app(settings))
        data = make_csv(args.rows)
        results: dict[str, Any] = {"rows": args.rows, "bytes": len(data),
                                   "backend": "sqlite" if args.sqlite else "postgresql+redis"}
        for run in ("first", "again"):
            started = time.perf_counter()
            report = send_campaign(
                data, name="bench", template="Chao {name}, uu dai 20% hom nay",
                settings=settings, db=db, publisher=publisher,
            )
            seconds = time.perf_counter() - started
            results[run] = {
                "seconds": round(seconds, 2),
                "rows_per_second": round(args.rows / seconds),
                "accepted": report.accepted,
                "errors": len(report.errors),
            }
        db.dispose()
        print(json.dumps(results, indent=2))
    finally:
        if redis_client is not None:
            redis_client.flushdb()
            redis_client.close()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
