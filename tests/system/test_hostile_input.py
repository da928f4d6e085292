"""Hostile input: whatever a caller passes, a message is accepted whole or refused cleanly.

Hypothesis drives the producer (``enqueue_sms`` and ``enqueue_many``) against the real
ledger (PostgreSQL and SQLite) and the real broker, with numbers, texts across all of
Unicode (lone surrogates, NUL and other control characters included), huge sizes and
wrong types for every option. Each call either returns an id or raises ValidationError —
never another exception — and the ledger gains exactly the rows accepted, never part of
one (all or nothing for a batch).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack
from worker.errors import ValidationError
from worker.ledger.models import Message

pytestmark = pytest.mark.system

HUGE = 1_000_000

any_char = st.characters(codec=None, categories=None, exclude_categories=())
junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=20),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
    st.just(object()), st.just(b"\x00" * 10),
)
digits = st.text(alphabet="0123456789", min_size=0, max_size=14)
#: numbers that are valid, written every way people write them
valid_phones = st.builds(
    lambda prefix, network, rest, sep: f"{prefix}{network}{sep}{rest[:3]}{sep}{rest[3:]}",
    st.sampled_from(["0", "84", "+84", "0084", "(+84) ", "+84 (0)"]),
    st.sampled_from(["91", "98", "32", "70", "86", "162"]),
    st.text(alphabet="0123456789", min_size=7, max_size=7),
    st.sampled_from(["", " ", ".", "-"]),
)
phones = st.one_of(
    valid_phones, valid_phones, valid_phones,
    # shaped like Vietnamese numbers, but off
    st.builds(lambda p, d, sep: sep.join([p, d[:3], d[3:]]),
              st.sampled_from(["0", "84", "+84", "0084", "", "+1", "+840"]),
              digits, st.sampled_from(["", " ", "\u00a0", "\x00", "\u200b", "/"])),
    st.text(alphabet=any_char, max_size=30),
    st.just("0" * HUGE), st.just("0912345678" + "\x00"), st.just("０９１２３４５６７８"),
    st.just("٠٩١٢٣٤٥٦٧٨"), junk,
)
#: texts that may pass: printable Unicode (Vietnamese, emoji, CJK, RTL, combining marks)
printable = st.text(alphabet=st.characters(codec=None, exclude_categories=("C",)),
                    min_size=1, max_size=150)
texts = st.one_of(
    printable, printable, printable,
    st.text(alphabet=st.sampled_from("aăâđêôơưÁẠẢÃẤ€^{}\\[~]|\n\r\t "), min_size=1,
            max_size=1200),
    st.text(alphabet=any_char, max_size=400),
    st.just("a" * HUGE), st.just("\x00"), st.just("hello\x00world"), st.just("\ud800"),
    st.just(" \n "), st.just("🙂" * 200), junk,
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12)),
                         timezone(timedelta(hours=23, minutes=59)), ZoneInfo("Asia/Ho_Chi_Minh")])
moments = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones),
    st.datetimes(),  # naive
    st.builds(lambda d: datetime.now(UTC) + timedelta(seconds=d),
              st.floats(min_value=-1e6, max_value=1e8)),
    st.text(max_size=30), junk,
)
kinds = st.sampled_from(["otp", "transactional", "marketing"])
options = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.one_of(kinds, kinds, kinds, st.text(max_size=20), junk),
        "sender": st.one_of(printable, st.text(alphabet=any_char, max_size=80),
                            st.just("S" * HUGE), junk),
        "idempotency_key": st.one_of(printable, printable, st.text(alphabet=any_char, max_size=220),
                                     st.just("k" * HUGE), junk),
        "unicode": st.one_of(st.none(), st.booleans(), junk),
        "strip_diacritics": st.one_of(st.none(), st.booleans(), junk),
        "send_at": moments,
        "expires_at": moments,
    },
)
#: calls that should mostly pass, with hostile but legal content
soon = st.builds(lambda d, z: (datetime.now(UTC) + timedelta(seconds=d)).astimezone(z),
                 st.floats(min_value=60, max_value=1e7), zones)
legal_options = st.fixed_dictionaries(
    {},
    optional={
        "kind": kinds,
        "sender": st.text(alphabet=st.characters(codec=None, exclude_categories=("C",)),
                          min_size=1, max_size=64),
        "idempotency_key": printable,
        "unicode": st.one_of(st.none(), st.just(True)),
        "strip_diacritics": st.booleans(),
        "send_at": soon,
    },
)
calls = st.one_of(
    st.tuples(valid_phones, printable, legal_options),
    st.tuples(phones, texts, options),
)
unknown_options = st.one_of(
    st.just({}), st.just({}), st.just({}), st.just({}), st.just({}),
    st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
            lambda k: k not in {"phone", "text", "session", "kind", "sender", "idempotency_key",
                                "unicode", "strip_diacritics", "send_at", "expires_at"}
        ),
        junk,
        min_size=1,
        max_size=1,
    ),
)

NATIONAL = re.compile(r"0[0-9]{9}")


@pytest.fixture
def stack(make_stack: Callable[..., Stack], db_url: str, redis_url: str) -> Stack:
    s = make_stack(db_url, redis_url)
    clean_ledger(s.db)
    return s


def rows(stack: Stack) -> int:
    with stack.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def check_row(stack: Stack, mid: int) -> None:
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
    assert m is not None, f"an accepted message {mid} has no row"
    assert NATIONAL.fullmatch(m.recipient), f"stored number not in national form: {m.recipient!r}"
    assert m.text and "\x00" not in m.text
    assert m.status in ("queued", "sending", "sent", "retrying"), m.status


@pytest.mark.timeout(300)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(call=calls, extra=unknown_options)
def test_any_input_to_enqueue_sms_is_accepted_whole_or_refused_with_a_validation_error(
    stack: Stack, call: tuple[Any, Any, dict[str, Any]], extra: dict[str, Any]
) -> None:
    phone, text, opts = call
    before = rows(stack)
    try:
        mid = stack.producer.enqueue_sms(phone, text, **opts, **extra)
    except ValidationError as exc:
        assert exc.field, "a ValidationError must name the field"
        assert rows(stack) == before, "a refused message left a row behind"
        event(f"refused: {exc.field}")
        return
    event("accepted")
    assert isinstance(mid, int)
    assert not extra, f"unknown options accepted: {sorted(extra)}"
    assert rows(stack) - before in (0, 1), "one message made more than one row"
    check_row(stack, mid)


good = st.fixed_dictionaries(
    {"phone": st.sampled_from(["0912345678", "+84 987 654 321", "0162 345 6789"]),
     "text": st.text(alphabet="abc xyz", min_size=1, max_size=50)}
)
items = st.one_of(
    good,
    st.fixed_dictionaries({"phone": phones, "text": texts}, optional={"kind": st.text(max_size=5)}),
    junk,
)
batches = st.one_of(st.lists(items, max_size=6), st.lists(good, min_size=1, max_size=5), junk,
                    st.text(max_size=5))


@pytest.mark.timeout(300)
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(messages=batches, kind=st.one_of(st.just("marketing"), st.text(max_size=8), junk))
def test_any_batch_to_enqueue_many_is_accepted_whole_or_refused_whole(
    stack: Stack, messages: Any, kind: Any
) -> None:
    before = rows(stack)
    try:
        ids = stack.producer.enqueue_many(messages, kind=kind)
    except ValidationError as exc:
        assert exc.field
        assert rows(stack) == before, "a refused batch left rows behind"
        event("refused")
        return
    event(f"accepted {len(ids)}")
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert rows(stack) - before == len(set(ids)), "the batch's rows do not match its ids"
    for mid in set(ids):
        check_row(stack, mid)
