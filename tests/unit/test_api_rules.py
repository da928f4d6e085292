"""The HTTP API's pure parts: cursors, field paths, the per-key request limit, tokens,
and the layering (no SQL in the web package; the producer does not pull the web stack)."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fibosms.web.cursors import (
    failure_cursor,
    message_cursor,
    read_failure_cursor,
    read_message_cursor,
)
from fibosms.web.problems import ApiError, field_path
from worker.ledger.apikeys import hash_token, split_token
from worker.requestlimit import LocalRequestLimiter, Unlimited, burst_for

WEB = Path(__file__).resolve().parents[2] / "fibosms" / "web"


def test_cursors_round_trip_and_are_not_interchangeable() -> None:
    assert read_message_cursor(message_cursor(42)) == 42
    at = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)
    assert read_failure_cursor(failure_cursor(at, 7)) == (at, 7)
    with pytest.raises(ApiError) as caught:
        read_message_cursor(failure_cursor(at, 7))
    assert caught.value.status == 422 and caught.value.errors == [
        {"field": "cursor", "reason": "not a cursor this API gave out"}
    ]


@pytest.mark.parametrize(
    "cursor",
    ["", "%%%", "bTo", "bTow", "bTotMQ", "bTo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "x" * 201,
     "ZjpiYWR8MQ", "ZjoyMDI2LTAxLTAxVDAwOjAwOjAwfDE"],
)
def test_a_cursor_not_given_out_is_a_422_on_cursor(cursor: str) -> None:
    for read in (read_message_cursor, read_failure_cursor):
        with pytest.raises(ApiError) as caught:
            read(cursor)  # type: ignore[operator]
        assert caught.value.status == 422


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "messages", 3, "phone"), "messages[3].phone"),
        (("body",), "body"),
        (("query", "limit"), "limit"),
        (("body", "ids", 0), "ids[0]"),
    ],
)
def test_field_paths_read_like_the_producers(loc: tuple[object, ...], path: str) -> None:
    assert field_path(loc) == path


def test_the_local_limit_lets_a_seconds_burst_through_then_says_how_long_to_wait() -> None:
    limiter = LocalRequestLimiter(rate=5)
    assert [limiter.try_take("a") for _ in range(5)] == [0.0] * 5
    wait = limiter.try_take("a")
    assert 0 < wait <= 0.2 + 1e-6
    assert limiter.try_take("b") == 0.0  # per caller
    assert Unlimited().try_take("a") == 0.0
    assert (burst_for(0.5), burst_for(2.7), burst_for(100)) == (1, 2, 100)


def test_a_slow_rate_spaces_requests_by_its_interval() -> None:
    limiter = LocalRequestLimiter(rate=0.5)
    assert limiter.try_take("a") == 0.0
    assert 1.9 < limiter.try_take("a") <= 2.0


def test_tokens_split_into_a_public_prefix_and_hash_apart() -> None:
    assert split_token("fsk_0a1b2c_secretpart") == "0a1b2c"
    for bad in ("", "fsk_", "fsk__x", "fsk_abc", "Bearer x", "fsk_" + "a" * 40 + "_x"):
        assert split_token(bad) is None
    assert hash_token("fsk_a_b") != hash_token("fsk_a_c")
    assert len(hash_token("fsk_a_b")) == 64


def test_the_web_package_holds_no_sql() -> None:
    offenders = []
    for path in WEB.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith("sqlalchemy") and n != "sqlalchemy.exc"]
    assert offenders == []


def test_importing_the_producer_pulls_in_no_web_stack() -> None:
    script = (
        "import sys, producer\n"
        "print(','.join(m for m in ('fastapi', 'starlette', 'uvicorn', 'fibosms.web')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_building_the_app_reads_no_setting_and_connects_nowhere() -> None:
    script = (
        "import os, sys\n"
        "os.environ['FIBOSMS_DATABASE_URL'] = 'postgresql+psycopg://nobody@192.0.2.1/none'\n"
        "from fibosms.web import create_app\n"
        "doc = create_app().openapi()\n"
        "print(len(doc['paths']), 'sqlalchemy.engine' in sys.modules and "
        "any(type(o).__name__ == 'Engine' for o in __import__('gc').get_objects()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    paths, engine = done.stdout.split()
    assert int(paths) >= 10 and engine == "False"


def test_a_message_cursor_keeps_a_whole_id_range() -> None:
    biggest = 2**63 - 1
    assert read_message_cursor(message_cursor(biggest)) == biggest
    late = datetime(9998, 12, 31, tzinfo=UTC) - timedelta(microseconds=1)
    assert read_failure_cursor(failure_cursor(late, 1))[0] == late


def test_a_body_that_trickles_is_cut_off_with_408_before_the_app_sees_it() -> None:
    import asyncio

    from fibosms.web.middleware import BodyLimit

    called: list[object] = []
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        called.append(scope)

    async def receive() -> dict[str, object]:
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"{", "more_body": True}  # never ends

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(BodyLimit(app, timeout=0.2)(scope, receive, send))  # type: ignore[arg-type]
    assert called == []
    assert sent[0]["status"] == 408
    assert b"took too long" in sent[1]["body"]  # type: ignore[operator]
