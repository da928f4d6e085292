"""A gateway answering garbage: the worker ends every message in a valid state, and lives.

The sandbox answers each send with a scripted raw body and HTTP status — random text, FIBO's
XML cut short or with odd codes, HTML, an entity bomb, more than a megabyte — a few times
per message, then normally. A real worker process must record each answer as a typed
outcome: every message ends ``sent`` or ``dead`` (with its failure row), its attempts match
the calls the gateway saw, no task raises, and the worker is still running at the end.

The bodies come from a seeded generator (FIBOSMS_TEST_FUZZ_SEED overrides the seed).
Account-wide codes are left out of the generated XML: they pause the whole account by design
(tests/integration cover that), which would stop this test's other messages.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from html import escape
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack
from worker.codes import SUCCESS_CODES, CodeClass, classify
from worker.ledger.models import Failure, Message

pytestmark = pytest.mark.system

MESSAGES = 60
MAX_ATTEMPTS = 4
SEED = int(os.environ.get("FIBOSMS_TEST_FUZZ_SEED", "20261127"))

FRAGMENTS = [
    '<?xml version="1.0" encoding="utf-8"?>', '<string xmlns="http://tempuri.org/">',
    "<string>", "</string>", "<SMS>", "</SMS>", "<Code>", "</Code>", "<Message>", "</Message>",
    "&lt;SMS&gt;", "&lt;Code&gt;", "&lt;/Code&gt;", "&lt;/SMS&gt;", "&lt;", "&gt;", "&amp;",
    "&#x0;", "&#65;", "&foo;", "<!DOCTYPE x>", "<![CDATA[<Code>1</Code>]]>", "<!-- c -->",
    "200", "1", "6", "-1", "1.5", "1e9", "٣", "|", " ", "\n", "\ufeff", "é", "Đ", "<html>",
    "<", ">", "/", '"', "=", "clientPass=", "\u202e",
]  # fmt: skip
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<string>&lol3;</string>"
)
STATUSES = [200, 200, 200, 200, 201, 204, 302, 400, 404, 418, 429, 500, 502, 503]


def fibo_xml(code: int, rng: random.Random) -> str:
    inner = f"<SMS><Code>{code}</Code><Message>{escape(rng.choice(FRAGMENTS))}</Message></SMS>"
    if rng.random() < 0.5:
        return f'<?xml version="1.0" encoding="utf-8"?><string xmlns="http://tempuri.org/">' \
               f"{escape(inner)}</string>"
    return f"<string>{inner}</string>"


def random_body(rng: random.Random) -> str:
    codes = [c for c in range(-2, 40) if classify(c) is not CodeClass.ACCOUNT] + [999, 10**12]
    kind = rng.randrange(9)
    if kind == 0:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 200)))
    if kind in (1, 2):
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 25)))
    if kind == 3:
        doc = fibo_xml(rng.choice(codes), rng)
        return doc[: rng.randrange(len(doc))]  # cut short
    if kind == 4:
        return fibo_xml(rng.choice(codes), rng)
    if kind == 5:
        return BOMB
    if kind == 6:
        return "<html><body><h1>502 Bad Gateway</h1>clientPass=echoed</body></html>"
    if kind == 7:
        return "x" * (1_100_000 if rng.random() < 0.5 else 0)
    return f"<string>{rng.choice(codes)}</string>"


def random_action(rng: random.Random) -> dict[str, Any]:
    action: dict[str, Any] = {"body": random_body(rng), "status": rng.choice(STATUSES)}
    if rng.random() < 0.2:
        action["content_type"] = rng.choice(["text/html", "application/json", "text/xml",
                                             "text/xml; charset=iso-8859-1", ""])
    return action


@pytest.mark.timeout(120)
def test_a_gateway_answering_garbage_leaves_every_message_in_a_valid_state(
    make_stack: Callable[..., Stack],
    pg_url: str,
    redis_url: str,
    sandbox: Any,
    figures: dict[str, Any],
) -> None:
    rng = random.Random(SEED)
    stack = make_stack(pg_url, redis_url, FIBOSMS_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
                       FIBOSMS_BREAKER_THRESHOLD="0")
    clean_ledger(stack.db)
    phones = [f"0918{i:06d}" for i in range(MESSAGES)]
    scripted = 0
    for phone in phones:
        actions = [random_action(rng) for _ in range(rng.randrange(1, MAX_ATTEMPTS + 1))]
        scripted += len(actions)
        sandbox.script(phone, actions)
    log = stack.start_worker(concurrency=4)
    ids = stack.producer.enqueue_many(
        [{"phone": p, "text": f"fuzz {i}"} for i, p in enumerate(phones)], kind="transactional"
    )

    # Then every message ends sent or dead, and nothing else
    def unfinished() -> list[tuple[Any, ...]]:
        with stack.db.sessions() as session:
            return [tuple(r) for r in session.execute(
                select(Message.id, Message.status, Message.attempts, Message.last_error)
                .where(Message.status.not_in(["sent", "dead"]))
            )]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and unfinished():
        time.sleep(0.5)
    left = unfinished()
    assert left == [], f"messages left neither sent nor dead after garbage answers: {left[:5]}"
    alive = stack.workers[0].poll() is None
    stack.stop_workers()
    assert alive, "the worker process died on the gateway's answers"

    with stack.db.sessions() as session:
        messages = {m.id: m for m in session.scalars(select(Message))}
        failures = {f.message_id: f for f in session.scalars(select(Failure))}
    calls = Counter(c.phone for c in sandbox.calls() if c.operation == "SendMaskedSMS")
    for mid in ids:
        m = messages[mid]
        assert 1 <= m.attempts <= MAX_ATTEMPTS, (mid, m.attempts)
        assert calls[m.recipient] == m.attempts, (
            f"message {mid}: {m.attempts} attempts recorded, {calls[m.recipient]} calls made"
        )
        if m.status == "sent":
            assert m.last_code in SUCCESS_CODES, (mid, m.last_code)
            assert mid not in failures
        else:
            f = failures.get(mid)
            assert f is not None, f"dead message {mid} has no failure row"
            assert f.cls in ("transient", "permanent", "ambiguous"), (mid, f.cls)
    text = log.read_text(errors="replace")
    assert "raised unexpected" not in text, "a send task raised instead of recording an outcome"
    assert "unexpected error from the gateway client" not in text, "the client leaked an error"
    assert "echoed" not in text, "a gateway body was copied into the worker's log"

    statuses = Counter(m.status for m in messages.values())
    figures.update(
        seed=SEED, messages=MESSAGES, garbage_answers=scripted,
        sent=statuses["sent"], dead=statuses["dead"],
        dead_by_class=dict(Counter(f.cls for f in failures.values())),
    )
