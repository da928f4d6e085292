"""One producer process for test_idempotency_race: enqueue keyed messages from a set moment.

``python -m tests.system.race_producer '<json>'`` with ``database_url``, ``broker_url``,
``data_dir``, ``keys_file`` (one key a line), ``seed`` (the order the keys are sent in),
``mode`` (``single``: one ``enqueue_sms`` per key; ``many``: ``enqueue_many`` in batches of
``batch``), ``later`` (scheduled a day ahead) and ``start_at`` (a ``time.time()``). Prints
one JSON document: the id each key got, and any errors.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def phone_for(key: str) -> str:
    return f"0917{int(key.rsplit('-', 1)[1]):06d}"


def main(raw: str) -> int:
    from fibosms.celeryapp import make_app, publisher_for
    from producer.enqueue import Producer
    from worker.ledger.db import Database
    from worker.settings import Settings

    args: dict[str, Any] = json.loads(raw)
    settings = Settings.from_env({
        "FIBOSMS_DATABASE_URL": args["database_url"],
        "FIBOSMS_BROKER_URL": args["broker_url"],
        "FIBOSMS_DATA_DIR": args["data_dir"],
        "FIBOSMS_ENV_FILE": f"{args['data_dir']}/no.env",
    })
    db = Database(settings.database_url)
    producer = Producer(settings=settings, db=db, publisher=publisher_for(make_app(settings)))
    with open(args["keys_file"], encoding="utf-8") as f:
        keys = f.read().split()
    random.Random(args["seed"]).shuffle(keys)
    ids: dict[str, int] = {}
    errors: list[str] = []
    # warm up the connections, then start together
    db.engine.connect().close()
    time.sleep(max(0.0, float(args["start_at"]) - time.time()))
    if args["mode"] == "single":
        for key in keys:
            try:
                ids[key] = producer.enqueue_sms(
                    phone_for(key), f"race {key}", idempotency_key=key
                )
            except Exception as exc:
                errors.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
    else:
        size = int(args.get("batch", 50))
        # scheduled a day ahead: nothing is published, the race is the INSERTs' alone
        later = {"send_at": datetime.now(UTC) + timedelta(days=1)} if args.get("later") else {}
        for start in range(0, len(keys), size):
            batch = keys[start : start + size]
            try:
                got = producer.enqueue_many(
                    [{"phone": phone_for(k), "text": f"race {k}", "idempotency_key": k, **later}
                     for k in batch],
                    kind="transactional",
                )
                ids.update(zip(batch, got, strict=True))
            except Exception as exc:
                errors.append(f"batch at {start}: {type(exc).__name__}: {exc}"[:300])
    print(json.dumps({"ids": ids, "errors": errors}))
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
