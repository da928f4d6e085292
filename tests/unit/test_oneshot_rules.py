"""The pure parts of ``fibosms send``'s one-shot path: which URLs it speaks, what it writes
on the wire, and which columns it names (worker.resp, worker.ledger.oneshot)."""

from __future__ import annotations

import io
from enum import StrEnum

import pytest
from sqlalchemy.sql.schema import ColumnDefault

from worker import resp
from worker.ledger import oneshot
from worker.ledger.models import Message


@pytest.mark.parametrize(
    "url,expected",
    [
        ("redis://127.0.0.1:6379/0", resp.Endpoint("127.0.0.1", 6379, 0, None, None)),
        ("redis://localhost", resp.Endpoint("localhost", 6379, 0, None, None)),
        ("redis://broker:6380/7", resp.Endpoint("broker", 6380, 7, None, None)),
        ("redis://:s%40cret@h/2", resp.Endpoint("h", 6379, 2, None, "s@cret")),
        ("redis://app:pw@h:1/", resp.Endpoint("h", 1, 0, "app", "pw")),
        ("redis://[::1]:6379/3", resp.Endpoint("::1", 6379, 3, None, None)),
    ],
)
def test_plain_redis_urls_are_spoken(url: str, expected: resp.Endpoint) -> None:
    assert resp.endpoint(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h:6379/0",  # TLS: redis-py's verification, not ours
        "sentinel://h:26379",
        "unix:///run/redis.sock",
        "redis://h:6379/0?socket_timeout=3",  # options redis-py would honour
        "redis://h:6379/zero",
        "redis://h:99999/0",
        "redis://:6379/0",
        "amqp://guest:guest@h//",
        "sqla+sqlite:///var/broker.db",
    ],
)
def test_anything_else_is_left_to_redis_py(url: str) -> None:
    assert resp.endpoint(url) is None


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert resp.encode("LPUSH", "default", b"\x00{}\r\n", 5) == (
        b"*4\r\n$5\r\nLPUSH\r\n$7\r\ndefault\r\n$5\r\n\x00{}\r\n\r\n$1\r\n5\r\n"
    )
    assert resp.encode("SET", "clé", "ố") == (
        b"*3\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$3\r\n\xe1\xbb\x91\r\n"
    )


@pytest.mark.parametrize(
    "wire,reply",
    [
        (b"+OK\r\n", b"OK"),
        (b":42\r\n", 42),
        (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
        (b"$-1\r\n", None),
        (b"*2\r\n:1\r\n$1\r\nx\r\n", [1, b"x"]),
    ],
)
def test_replies_are_read(wire: bytes, reply: resp.Reply) -> None:
    assert resp._read(io.BytesIO(wire)) == reply


def test_an_error_reply_is_returned_as_an_error() -> None:
    got = resp._read(io.BytesIO(b"-WRONGTYPE Operation against a key\r\n"))
    assert isinstance(got, resp.RespError) and "WRONGTYPE" in str(got)


@pytest.mark.parametrize(
    "wire", [b"+OK", b"$5\r\nhe", b"?what\r\n", b"", b":4x\r\n", b"$five\r\nhello\r\n"]
)
def test_a_cut_or_foreign_reply_breaks_the_connection(wire: bytes) -> None:
    with pytest.raises(resp.ProtocolError):
        resp._read(io.BytesIO(wire))


@pytest.mark.parametrize(
    "url,dsn",
    [
        ("postgresql+psycopg://u:p%40ss@db:5433/ledger?sslmode=require",
         "postgresql://u:p%40ss@db:5433/ledger?sslmode=require"),
        ("postgresql://fibosms@127.0.0.1/fibosms", "postgresql://fibosms@127.0.0.1/fibosms"),
    ],
)
def test_a_postgresql_url_becomes_libpqs_own(url: str, dsn: str) -> None:
    assert oneshot.dsn_for(url) == dsn


@pytest.mark.parametrize(
    "url", ["sqlite:///var/fibosms.db", "postgresql+psycopg2://u@h/db", "mysql://u@h/db", "x"]
)
def test_other_databases_are_left_to_sqlalchemy(url: str) -> None:
    assert oneshot.dsn_for(url) is None


def test_the_columns_are_the_tables_and_every_model_default_is_written_out() -> None:
    table = Message.__table__
    assert {c.name for c in table.columns} - {"id"} == oneshot.COLUMNS
    defaulted = {
        c.name: c.default.arg for c in table.columns if isinstance(c.default, ColumnDefault)
    }
    assert defaulted == dict(oneshot.DEFAULTS)
    assert set(oneshot.DUE_NOW_COLUMNS) <= oneshot.COLUMNS


def test_a_row_naming_an_unknown_column_is_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="not a column of sms_messages: nope"):
        oneshot.insert_due_now("postgresql://nobody@127.0.0.1:1/none", {"nope": 1})


def test_a_str_enum_is_bound_by_its_value() -> None:
    class Colour(StrEnum):
        RED = "red"

    bound = oneshot._plain(Colour.RED)
    assert bound == "red" and type(bound) is str
    assert oneshot._plain(3) == 3 and oneshot._plain(None) is None
