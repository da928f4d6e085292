"""Two producer processes enqueue the same idempotency keys at the same moment.

Each key must make exactly one message, and both callers must get its id — on PostgreSQL
(concurrent INSERT … ON CONFLICT DO NOTHING) and on SQLite (one writer at a time). The
processes start at the same instant and send the keys in different orders, one by one or
in batches, which is what makes two transactions wait on each other's rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import ROOT
from worker.ledger.db import Database
from worker.ledger.models import Message

pytestmark = pytest.mark.system

#: keys in the one-by-one race, and in the batch race (one enqueue_many of them all each:
#: large enough for the two INSERTs to overlap, which deadlocked before the keys were sorted)
KEYS = 300
BIG = 10000


@pytest.mark.timeout(120)
def test_two_producers_racing_on_the_same_keys_make_one_message_per_key(
    db_url: str, redis_url: str, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """One process one key at a time, the other in batches of 50, in another order."""
    race(db_url, redis_url, tmp_path, ("single", "many"), 50, figures)


@pytest.mark.timeout(120)
def test_two_producers_racing_with_big_overlapping_batches_neither_deadlocks_nor_doubles(
    pg_url: str, redis_url: str, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """PostgreSQL only: SQLite lets one writer in at a time, so its batches cannot overlap."""
    race(pg_url, redis_url, tmp_path, ("many", "many"), BIG, figures)


def race(
    db_url: str, redis_url: str, tmp_path: Path, modes: tuple[str, str], batch: int,
    figures: dict[str, Any],
) -> None:
    db = Database(db_url)
    clean_ledger(db)
    run = uuid.uuid4().hex[:6]
    count = BIG if batch == BIG else KEYS
    keys = [f"race-{run}-{i}" for i in range(count)]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(keys))
    start_at = time.time() + 2.5
    procs = []
    for n, mode in enumerate(modes):
        args = {
            "database_url": db_url, "broker_url": redis_url, "data_dir": str(tmp_path),
            "keys_file": str(keys_file), "seed": n, "mode": mode, "start_at": start_at,
            "batch": batch, "later": batch == BIG,
        }
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.system.race_producer", json.dumps(args)],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        ))
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, f"a producer process failed:\n{err.decode()[-3000:]}"
            outputs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - start_at

    # Then neither caller saw an error (a deadlock or a unique violation would show here)
    errors = [e for o in outputs for e in o["errors"]]
    assert errors == [], f"racing producers got errors: {errors[:5]}"
    # and each key made exactly one message
    with db.sessions() as session:
        per_key = dict(session.execute(
            select(Message.idempotency_key, func.count()).group_by(Message.idempotency_key)
        ).all())
        total = session.scalar(select(func.count()).select_from(Message))
    doubled = {k: n for k, n in per_key.items() if n != 1}
    assert doubled == {}, f"keys with more than one message: {doubled}"
    assert set(per_key) == set(keys) and total == count, f"{total} messages for {count} keys"
    # and both callers got the same id for each key
    a, b = (o["ids"] for o in outputs)
    assert set(a) == set(b) == set(keys)
    differing = [k for k in keys if a[k] != b[k]]
    assert differing == [], f"the two callers got different ids for {differing[:5]}"
    db.dispose()
    figures.update(
        backend=db.dialect, keys=count, producers=2, modes="+".join(modes), batch=batch,
        messages=total, seconds=round(elapsed, 1),
    )
