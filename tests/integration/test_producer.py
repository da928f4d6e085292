"""The producer against real databases and a real Redis broker."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select

from tests.fixtures.stack import Stack
from worker.errors import IdempotencyConflict, ValidationError
from worker.ledger.models import Message


def queued_ids(redis_url: str, queue: str) -> list[int]:
    """The message ids waiting in a Celery queue on Redis, read from the raw payloads."""
    client = redis.Redis.from_url(redis_url)
    ids = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        # send_sms(id), or send_batch([id, …]) on the bulk queue
        ids.extend(args[0] if isinstance(args[0], list) else [args[0]])
    client.close()
    return sorted(ids)


@pytest.fixture
def stack(make_stack: Callable[..., Stack], db_url: str, redis_url: str) -> Stack:
    s = make_stack(db_url, redis_url)
    from tests.fixtures.services import clean_ledger

    clean_ledger(s.db)
    return s


def count(stack: Stack) -> int:
    with stack.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def test_a_message_is_recorded_normalized_and_only_its_id_is_published(
    stack: Stack, redis_url: str
) -> None:
    mid = stack.producer.enqueue_sms("+84 912.345.678", "Ma OTP cua ban: 123456", kind="otp")
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
    assert m is not None
    assert (m.recipient, m.status, m.queue, m.service_type, m.sender) == (
        "0912345678", "queued", "urgent", 0, "FIBOTEST"
    )
    assert queued_ids(redis_url, "urgent") == [mid]
    raw = b"".join(redis.Redis.from_url(redis_url).lrange("urgent", 0, -1))
    assert b"912345678" not in raw and b"123456" not in raw


@pytest.mark.parametrize(("kind", "queue"), [("otp", "urgent"), ("transactional", "default"),
                                             ("marketing", "bulk")])
def test_each_kind_goes_to_its_queue(stack: Stack, redis_url: str, kind: str, queue: str) -> None:
    mid = stack.producer.enqueue_sms("0912345678", "hello", kind=kind)
    assert queued_ids(redis_url, queue) == [mid]


def test_the_same_idempotency_key_returns_the_same_message_and_publishes_once(
    stack: Stack, redis_url: str
) -> None:
    first = stack.producer.enqueue_sms("0912345678", "hello", idempotency_key="order-42")
    again = stack.producer.enqueue_sms("0912345678", "hello", idempotency_key="order-42")
    assert first == again
    assert count(stack) == 1
    assert queued_ids(redis_url, "default") == [first]


@pytest.mark.parametrize(
    "change",
    [
        {"phone": "0987654321"},
        {"text": "goodbye"},
        {"kind": "otp"},
        {"sender": "OTHERBRAND"},
        {"unicode": True},
        {"expires_at": datetime(2999, 1, 1, tzinfo=UTC)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_same_idempotency_key_with_other_content_is_a_conflict_and_writes_nothing(
    stack: Stack, redis_url: str, change: dict[str, object]
) -> None:
    # Given a message accepted under a key
    first = stack.producer.enqueue_sms("0912345678", "hello", idempotency_key="order-7")
    # When the same key comes with one thing different
    options: dict[str, object] = {"phone": "0912345678", "text": "hello", **change}
    phone, text = options.pop("phone"), options.pop("text")
    with pytest.raises(IdempotencyConflict) as caught:
        stack.producer.enqueue_sms(str(phone), str(text), idempotency_key="order-7", **options)
    # Then it is refused naming the key and the first message, and nothing new exists
    assert (caught.value.field, caught.value.message_id) == ("idempotency_key", first)
    assert isinstance(caught.value, ValidationError)
    assert "0912345678" not in str(caught.value) and "hello" not in str(caught.value)
    assert count(stack) == 1
    assert queued_ids(redis_url, "default") == [first]


def test_the_same_key_in_other_written_form_of_the_number_is_the_same_content(
    stack: Stack,
) -> None:
    first = stack.producer.enqueue_sms("0912345678", "hello", idempotency_key="k")
    assert stack.producer.enqueue_sms("+84 912 345 678", "hello", idempotency_key="k") == first
    assert stack.producer.submit("0912.345.678", "hello", idempotency_key="k").created is False


def test_a_batch_with_a_conflicting_key_is_refused_whole_naming_the_item(
    stack: Stack, redis_url: str
) -> None:
    first = stack.producer.enqueue_sms("0912345678", "hello", idempotency_key="taken")
    batch = [{"phone": f"09123{i:05d}", "text": f"Khuyen mai {i}"} for i in range(5)]
    batch[3]["idempotency_key"] = "taken"
    with pytest.raises(IdempotencyConflict) as caught:
        stack.producer.enqueue_many(batch)
    assert (caught.value.field, caught.value.message_id) == ("messages[3].idempotency_key", first)
    # two items of the same batch under one key with other content conflict with each other
    batch = [{"phone": "0912300001", "text": "a", "idempotency_key": "twice"},
             {"phone": "0912300001", "text": "b", "idempotency_key": "twice"}]
    with pytest.raises(IdempotencyConflict) as caught:
        stack.producer.enqueue_many(batch)
    assert caught.value.field == "messages[1].idempotency_key"
    assert count(stack) == 1
    assert queued_ids(redis_url, "bulk") == []


def test_two_producers_racing_on_the_same_keys_make_one_message_per_key(stack: Stack) -> None:
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def produce() -> None:
        barrier.wait()
        results.append(
            [stack.producer.enqueue_sms("0912345678", f"m{i}", idempotency_key=f"k{i}")
             for i in range(50)]
        )

    threads = [threading.Thread(target=produce) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1]
    assert count(stack) == 50


def test_a_rolled_back_caller_transaction_leaves_no_message_and_publishes_nothing(
    stack: Stack, redis_url: str
) -> None:
    with stack.db.sessions() as session:
        session.begin()
        stack.producer.enqueue_sms("0912345678", "hello", session=session)
        session.rollback()
    assert count(stack) == 0
    assert queued_ids(redis_url, "default") == []


def test_a_committed_caller_transaction_publishes_after_the_commit(
    stack: Stack, redis_url: str
) -> None:
    with stack.db.sessions() as session:
        session.begin()
        mid = stack.producer.enqueue_sms("0912345678", "hello", session=session)
        assert queued_ids(redis_url, "default") == []  # nothing before the commit
        session.commit()
    assert queued_ids(redis_url, "default") == [mid]


def test_enqueue_many_returns_ids_in_order_and_publishes_them_all(
    stack: Stack, redis_url: str
) -> None:
    batch = [{"phone": f"09123{i:05d}", "text": f"Khuyen mai {i}"} for i in range(2500)]
    batch[10]["idempotency_key"] = "dup"
    # the same key twice with the same content: one message (other content is a conflict)
    batch[20] = dict(batch[10])
    ids = stack.producer.enqueue_many(batch)
    assert len(ids) == 2500 and ids[10] == ids[20]
    assert len(set(ids)) == 2499
    with stack.db.sessions() as session:
        phones = {i: r for i, r in session.execute(select(Message.id, Message.recipient))}
    assert [phones[i] for i in ids[:3]] == ["0912300000", "0912300001", "0912300002"]
    assert queued_ids(redis_url, "bulk") == sorted(set(ids))


def test_enqueue_many_is_all_or_nothing_and_names_the_bad_item(stack: Stack) -> None:
    batch = [{"phone": "0912345678", "text": "ok"}, {"phone": "024 3826 1234", "text": "ok"}]
    with pytest.raises(ValidationError) as info:
        stack.producer.enqueue_many(batch)
    assert info.value.field == "messages[1].phone"
    assert count(stack) == 0


@pytest.mark.parametrize(
    ("phone", "text", "options", "field"),
    [
        ("12345", "hello", {}, "phone"),
        ("0912345678", "", {}, "text"),
        ("0912345678", "a\x00b", {}, "text"),
        ("0912345678", "hello", {"kind": "promo"}, "kind"),
        ("0912345678", "hello", {"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "expires_at"),
        ("0912345678", "hello", {"send_at": datetime(2030, 1, 1)}, "send_at"),
        ("0912345678", "hello", {"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    stack: Stack, phone: str, text: str, options: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        stack.producer.enqueue_sms(phone, text, **options)
    assert info.value.field == field
    assert count(stack) == 0


def test_a_scheduled_message_waits_for_the_sweep(stack: Stack, redis_url: str) -> None:
    mid = stack.producer.enqueue_sms(
        "0912345678", "later", send_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert queued_ids(redis_url, "default") == []
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
        assert m is not None and m.published_at is None


def test_with_the_broker_down_enqueue_still_accepts_and_leaves_it_to_the_sweep(
    make_stack: Callable[..., Stack], db_url: str
) -> None:
    stack = make_stack(db_url, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    from tests.fixtures.services import clean_ledger

    clean_ledger(stack.db)
    started = datetime.now(UTC)
    mid = stack.producer.enqueue_sms("0912345678", "hello")
    took = (datetime.now(UTC) - started).total_seconds()
    with stack.db.sessions() as session:
        m = session.get(Message, mid)
        assert m is not None and m.status == "queued" and m.published_at is None
    assert took < 10, f"the caller was blocked {took:.1f}s"
