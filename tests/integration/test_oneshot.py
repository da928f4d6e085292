"""``fibosms send``'s one-shot path (producer.oneshot): the row the driver writes is the row
SQLAlchemy writes, what it publishes a worker sends, a failed publish is left to the sweep,
and every case it does not handle is left, untouched, to the full producer.

Real PostgreSQL, Redis, sandbox and Celery worker.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from producer.oneshot import send_once
from tests.fixtures.stack import ROOT, Stack, statuses, wait_for
from worker import resp
from worker.ledger.models import Message
from worker.publish import broker_publisher
from worker.settings import Settings

PHONE = "0912 345 678"
#: the columns whose values differ between any two rows: the id and the server's times
PER_ROW = {"id", "created_at", "updated_at", "next_attempt_at", "published_at"}


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(pg_url, redis_url)
    clean_ledger(s.db)
    return s


def row(stack: Stack, message_id: int) -> dict[str, Any]:
    with stack.db.sessions() as session:
        m = session.get(Message, message_id)
        assert m is not None
        return {c.name: getattr(m, c.key) for c in Message.__table__.columns}


def recorded_both_ways(
    stack: Stack, text: str, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same message recorded by the producer (SQLAlchemy) and by ``send_once`` (the
    driver): the two rows, which must agree in every column but the per-row ones."""
    by_sqlalchemy = row(stack, stack.producer.enqueue_sms(PHONE, text, **options))
    found = send_once(stack.settings, PHONE, text, **options)
    assert found is not None
    by_driver = row(stack, found)
    assert {k: v for k, v in by_driver.items() if k not in PER_ROW} == {
        k: v for k, v in by_sqlalchemy.items() if k not in PER_ROW
    }
    return by_sqlalchemy, by_driver


def count(stack: Stack) -> int:
    with stack.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


@pytest.mark.parametrize(
    "text,options",
    [
        ("Ma OTP cua ban la 493817", {"kind": "otp"}),
        ("Đơn hàng #12 đã giao", {"sender": "SHOP"}),
        ("Đơn hàng #12 đã giao", {"strip_diacritics": True}),
        ("x" * 200, {"unicode": True, "kind": "transactional"}),
    ],
    ids=["otp", "unicode", "stripped", "long"],
)
def test_the_driver_writes_the_row_sqlalchemy_writes(
    stack: Stack, text: str, options: dict[str, Any]
) -> None:
    by_sqlalchemy, by_driver = recorded_both_ways(stack, text, options)
    # due at once, on the server's clock, and published
    times = {by_driver[k] for k in PER_ROW - {"id"}}
    assert len(times) == 1 and next(iter(times)).utcoffset() is not None
    assert by_driver["created_at"] >= by_sqlalchemy["created_at"]


def test_what_it_publishes_a_worker_sends_once(stack: Stack, sandbox: Any) -> None:
    ids = [send_once(stack.settings, PHONE, f"hello {i}", kind=k)
           for i, k in enumerate(("otp", "transactional"))]
    assert None not in ids
    stack.start_worker()
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=40)
    assert len(sandbox.accepted()) == 2


def test_with_the_broker_down_the_row_is_left_to_the_sweep(
    make_stack: Callable[..., Stack], pg_url: str
) -> None:
    from tests.fixtures.services import clean_ledger

    s = make_stack(pg_url, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    clean_ledger(s.db)
    found = send_once(s.settings, PHONE, "hello")
    assert found is not None
    r = row(s, found)
    assert r["status"] == "queued" and r["published_at"] is None


@pytest.mark.parametrize(
    "options",
    [
        {"idempotency_key": "order-1"},
        {"kind": "marketing"},
        {"send_at": datetime(2099, 1, 1, tzinfo=UTC)},
    ],
    ids=["keyed", "marketing", "scheduled"],
)
def test_a_message_that_needs_more_than_one_insert_is_left_to_the_producer(
    stack: Stack, options: dict[str, Any]
) -> None:
    assert send_once(stack.settings, PHONE, "hello", **options) is None
    assert count(stack) == 0


def test_a_kind_the_suppression_list_is_consulted_for_is_left_to_the_producer(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    s = make_stack(pg_url, redis_url, FIBOSMS_SUPPRESS_KINDS="marketing,transactional")
    from tests.fixtures.services import clean_ledger

    clean_ledger(s.db)
    assert send_once(s.settings, PHONE, "hello", kind="transactional") is None
    assert send_once(s.settings, PHONE, "hello", kind="otp") is not None
    assert count(s) == 1


@pytest.mark.parametrize(
    "database,broker",
    [
        ("sqlite:///{tmp}/missing.db", "redis://127.0.0.1:6379/0"),
        ("{pg}", "amqp://guest:guest@127.0.0.1:5672//"),
        ("{pg}", "sqla+sqlite:///{tmp}/broker.db"),
        ("{pg}", "rediss://127.0.0.1:6379/0"),
        ("sqlite:///{tmp}/ledger.db?timeout=5", "redis://127.0.0.1:6379/0"),
    ],
    ids=["sqlite-ledger-not-made", "rabbitmq", "sqlite-broker-without-tables", "redis-tls",
         "sqlite-url-with-options"],
)
def test_other_ledgers_and_brokers_are_left_to_the_producer(
    pg_url: str, tmp_path: Any, database: str, broker: str, stack_env: dict[str, str]
) -> None:
    url = database.format(tmp=tmp_path, pg=pg_url)
    settings = Settings.from_env(
        {**stack_env, "FIBOSMS_DATABASE_URL": url,
         "FIBOSMS_BROKER_URL": broker.format(tmp=tmp_path)}
    )
    # refused before anything is validated, connected or recorded
    assert send_once(settings, "not a number", "hello") is None


def test_the_wire_pipeline_selects_the_database_and_reports_refusals(redis_url: str) -> None:
    import redis

    where = resp.endpoint(redis_url)
    assert where is not None and where.db != 0
    replies = resp.pipeline(
        where, [("RPUSH", "oneshot-test", "a"), ("RPUSH", "oneshot-test", b"b\r\n"),
                ("LRANGE", "oneshot-test", 0, -1)], timeout=2,
    )
    assert replies == [1, 2, [b"a", b"b\r\n"]]
    client = redis.Redis.from_url(redis_url)
    assert client.lrange("oneshot-test", 0, -1) == [b"a", b"b\r\n"]
    client.close()
    with pytest.raises(resp.RespError, match=r"^LPUSH: WRONGTYPE") as refused:
        resp.pipeline(where, [("SET", "oneshot-s", "1"), ("LPUSH", "oneshot-s", "x")], timeout=2)
    assert "oneshot-s" not in str(refused.value)
    secret = "S3cr3t-pw"
    login = resp.Endpoint(where.host, where.port, where.db, None, secret)
    with pytest.raises(resp.RespError, match=r"^AUTH: ") as denied:
        resp.pipeline(login, [("PING",)], timeout=2)
    assert secret not in str(denied.value)


def send_through_the_command_line(stack: Stack) -> tuple[int, list[str]]:
    """``fibosms send`` in a process of its own: the id it printed, and which of SQLAlchemy,
    redis-py, kombu and Celery it imported."""
    script = (
        "import sys\n"
        "from fibosms.cli.main import main\n"
        "try:\n"
        "    main(['send', '0912345678', 'hello', '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = ('sqlalchemy', 'redis', 'kombu', 'celery')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + script], cwd=ROOT,
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    printed, loaded = done.stdout.strip().splitlines()
    return int(json.loads(printed)["id"]), json.loads(loaded)


def test_fibosms_send_on_postgresql_and_redis_imports_neither_sqlalchemy_nor_redis_py(
    stack: Stack, redis_url: str
) -> None:
    message_id, loaded = send_through_the_command_line(stack)
    assert loaded == []
    r = row(stack, message_id)
    assert r["recipient"] == "0912345678" and r["status"] == "queued"
    assert r["published_at"] is not None
    assert broker_publisher(stack.settings, oneshot=True).speaks_wire



# -- the embedded defaults: an SQLite ledger and kombu's SQLAlchemy transport on SQLite ------


@pytest.fixture
def defaults(make_stack: Callable[..., Stack], tmp_path: Any) -> Stack:
    """A migrated SQLite ledger, and an SQLite broker whose tables kombu has made (as a
    worker's or the producer's first connection makes them), holding no message."""
    from kombu import Connection

    from worker.ledger.migrate import upgrade

    ledger = f"sqlite:///{tmp_path}/ledger.db"
    upgrade(ledger)
    broker = f"sqla+sqlite:///{tmp_path}/broker.db"
    with Connection(broker) as connection:
        connection.default_channel.session  # noqa: B018 - the tables are made on first use
    return make_stack(ledger, broker)


def broker_rows(stack: Stack) -> list[dict[str, Any]]:
    import sqlite3

    path = stack.settings.broker_url.removeprefix("sqla+sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        found = connection.execute(
            "SELECT m.*, q.name AS queue FROM kombu_message m JOIN kombu_queue q "
            "ON q.id = m.queue_id ORDER BY m.id"
        ).fetchall()
    return [dict(r) for r in found]


def stored_times(stack: Stack, message_id: int) -> tuple[Any, ...]:
    import sqlite3

    path = stack.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        found = connection.execute(
            "SELECT created_at, updated_at, next_attempt_at, published_at FROM sms_messages "
            "WHERE id = ?", [message_id],
        ).fetchone()
    return tuple(found)


@pytest.mark.parametrize(
    "text,options",
    [
        ("Ma OTP cua ban la 493817", {"kind": "otp"}),
        ("Đơn hàng #12 đã giao",
         {"sender": "SHOP", "expires_at": datetime(2099, 1, 1, 12, 30, tzinfo=UTC)}),
    ],
    ids=["otp", "unicode-expiring"],
)
def test_on_the_defaults_the_row_and_the_queued_message_are_kombus_and_sqlalchemys(
    defaults: Stack, text: str, options: dict[str, Any]
) -> None:
    by_sqlalchemy, by_driver = recorded_both_ways(defaults, text, options)
    found = by_driver["id"]
    # the four times are one, SQLite's 'now', stored in SQLAlchemy's format
    times = stored_times(defaults, found)
    assert len(set(times)) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}000", times[0])
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", t)
        for t in stored_times(defaults, by_sqlalchemy["id"])
    )
    # one queued message each, the same in all but their ids
    by_kombu, direct = broker_rows(defaults)
    queue = "urgent" if options.get("kind") == "otp" else "default"
    for r in (by_kombu, direct):
        assert (r["visible"], r["version"], r["timestamp"], r["queue"]) == (1, 1, None, queue)
    a, b = json.loads(by_kombu["payload"]), json.loads(direct["payload"])
    assert set(a) == set(b) and set(a["headers"]) == set(b["headers"])
    assert a["properties"]["delivery_info"] == b["properties"]["delivery_info"]
    per_message = ("correlation_id", "delivery_tag", "reply_to")  # per message or publisher
    assert {k: v for k, v in a["properties"].items() if k not in per_message} == {
        k: v for k, v in b["properties"].items() if k not in per_message
    }
    assert a["headers"]["task"] == b["headers"]["task"] == "fibosms.send_sms"
    body = json.loads(base64.b64decode(b["body"]))
    assert body[0] == [found]


def test_on_the_defaults_a_worker_sends_what_was_queued_directly(
    defaults: Stack, sandbox: Any
) -> None:
    ids = [send_once(defaults.settings, PHONE, f"hello {i}", kind=k)
           for i, k in enumerate(("otp", "transactional"))]
    assert None not in ids
    defaults.start_worker()
    wait_for(lambda: set(statuses(defaults.db, ids).values()) == {"sent"}, timeout=40)
    assert sorted(m.text for m in sandbox.accepted()) == ["hello 0", "hello 1"]


def test_on_the_defaults_a_locked_broker_leaves_the_row_to_the_sweep(
    defaults: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from worker.ledger import oneshot as ledger_oneshot

    monkeypatch.setattr(ledger_oneshot, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.1)
    monkeypatch.setattr("worker.publish.PUBLISH_RETRY_POLICY",
                        {"max_retries": 1, "interval_start": 0.01})
    path = defaults.settings.broker_url.removeprefix("sqla+sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the broker's file
    try:
        found = send_once(defaults.settings, PHONE, "hello")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert found is not None
    r = row(defaults, found)
    assert r["status"] == "queued" and r["published_at"] is None
    assert broker_rows(defaults) == []


def test_fibosms_send_on_the_defaults_imports_neither_sqlalchemy_nor_kombu(
    defaults: Stack,
) -> None:
    message_id, loaded = send_through_the_command_line(defaults)
    assert loaded == []
    r = row(defaults, message_id)
    assert r["recipient"] == "0912345678" and r["published_at"] is not None
    [queued] = broker_rows(defaults)
    body = json.loads(base64.b64decode(json.loads(queued["payload"])["body"]))
    assert body[0] == [message_id]


def test_without_the_brokers_tables_the_defaults_are_left_to_the_producer(
    make_stack: Callable[..., Stack], tmp_path: Any
) -> None:
    from worker.ledger.migrate import upgrade

    ledger = f"sqlite:///{tmp_path}/ledger.db"
    upgrade(ledger)
    s = make_stack(ledger, f"sqla+sqlite:///{tmp_path}/fresh-broker.db")
    assert send_once(s.settings, PHONE, "hello") is None
    assert count(s) == 0
    assert not (tmp_path / "fresh-broker.db").exists()  # looked at, not created
