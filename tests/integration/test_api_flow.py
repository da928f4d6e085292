"""The HTTP API end to end: a message through a real worker to the sandbox, dead letters
replayed, the idempotency race, hostile bodies, the body and rate limits, the key commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.api import assert_problem, count_messages, make_token, serve_api
from tests.fixtures.stack import Stack, wait_for
from worker.ledger.models import Message

PHONE = "0912345678"


def test_a_message_through_the_api_is_sent_and_dead_letters_are_listed_and_replayed(
    api: httpx.Client, api_stack: Stack, sandbox: Any
) -> None:
    # Given a worker, and a gateway that refuses three numbers once with a permanent code
    dead_phones = ["0912000001", "0912000002", "0912000003"]
    for phone in dead_phones:
        sandbox.script(phone, [{"code": 5}])
    api_stack.start_worker()
    # When messages come in through the API
    sent = api.post("/v1/messages", json={"phone": PHONE, "text": "Xin chào", "kind": "otp"})
    doomed = [api.post("/v1/messages", json={"phone": p, "text": "hi"}).json()["id"]
              for p in dead_phones]
    # Then the first is sent by the sandbox, the others are dead letters, listed in pages
    mid = sent.json()["id"]
    wait_for(lambda: api.get(f"/v1/messages/{mid}").json()["status"] == "sent")
    assert any(m.phone == PHONE and m.text == "Xin chào" for m in sandbox.accepted())
    wait_for(lambda: all(api.get(f"/v1/messages/{d}").json()["status"] == "dead"
                         for d in doomed))
    first = api.get("/v1/failures", params={"limit": 2}).json()
    second = api.get("/v1/failures", params={"limit": 2, "cursor": first["next"]}).json()
    listed = [f["message_id"] for f in first["items"] + second["items"]]
    assert sorted(listed) == sorted(doomed) and second["next"] is None
    assert {f["code"] for f in first["items"]} == {5}
    assert all(f["recipient"].count("*") == 3 for f in first["items"])
    assert api.get("/v1/failures", params={"code": 2}).json()["items"] == []
    # And a replay by code sends them (the script is spent)
    replayed = api.post("/v1/failures/replay", json={"code": 5}).json()
    assert sorted(replayed["replayed"]) == sorted(doomed)
    wait_for(lambda: all(api.get(f"/v1/messages/{d}").json()["status"] == "sent"
                         for d in doomed))
    assert api.get("/v1/failures").json()["items"] == []


def test_two_clients_racing_with_one_key_get_one_message(
    api: httpx.Client, api_stack: Stack
) -> None:
    url, headers = str(api.base_url), dict(api.headers)
    def post(key: str, barrier: threading.Barrier, answers: list[httpx.Response]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            barrier.wait()
            answers.append(client.post("/v1/messages", json={"phone": PHONE, "text": "x"},
                                       headers={"Idempotency-Key": key}))

    for round_ in range(10):
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []
        threads = [threading.Thread(target=post, args=(f"race-{round_}", barrier, answers))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
    assert count_messages(api_stack) == 10


HOSTILE: list[tuple[str, bytes]] = [
    ("not json", b"{phone: 1"),
    ("a list", b"[]"),
    ("wrong types", json.dumps({"phone": 912345678, "text": ["a"]}).encode()),
    ("a bool as a string", json.dumps({"phone": PHONE, "text": "x", "unicode": "yes"}).encode()),
    ("unknown field", json.dumps({"phone": PHONE, "text": "x", "password": "p"}).encode()),
    ("NUL in text", json.dumps({"phone": PHONE, "text": "a\u0000b"}).encode()),
    ("NUL in phone", json.dumps({"phone": "0912\u0000345678", "text": "a"}).encode()),
    ("huge text", json.dumps({"phone": PHONE, "text": "a" * 900_000}).encode()),
    ("huge phone", json.dumps({"phone": "9" * 100_000, "text": "a"}).encode()),
    ("deep nesting", b'{"phone": ' + b"[" * 100_000 + b"]" * 100_000 + b', "text": "a"}'),
    ("deep objects", b'{"text": "a", "phone": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000
     + b"}"),
    ("lone surrogate", b'{"phone": "0912345678", "text": "\\ud800"}'),
    ("bad utf-8", b'{"phone": "0912345678", "text": "\xff\xfe"}'),
    ("naive send_at", json.dumps({"phone": PHONE, "text": "x",
                                  "send_at": "2030-01-01T00:00:00"}).encode()),
    ("year 10000", json.dumps({"phone": PHONE, "text": "x",
                               "expires_at": "9999-12-31T23:59:59-12:00"}).encode()),
    ("a number as kind", json.dumps({"phone": PHONE, "text": "x", "kind": 1}).encode()),
    ("infinity", b'{"phone": "0912345678", "text": "x", "sender": Infinity}'),
]


@pytest.mark.parametrize(("name", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_problem_document_and_write_nothing(
    api: httpx.Client, api_stack: Stack, name: str, body: bytes
) -> None:
    for path in ("/v1/messages", "/v1/messages/batch"):
        r = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
        assert_problem(r, r.status_code)
        assert "0912345678" not in r.text or name == "a list"
        if name == "not json":
            reason = "not valid JSON at character 1"
            assert r.json()["errors"] == [{"field": "body", "reason": reason}]
    assert count_messages(api_stack) == 0


def test_a_body_over_one_mebibyte_is_413_however_it_is_sent(
    api: httpx.Client, api_stack: Stack
) -> None:
    big = json.dumps({"phone": PHONE, "text": "a" * (1024 * 1024)}).encode()
    assert_problem(api.post("/v1/messages", content=big,
                            headers={"Content-Type": "application/json"}), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    assert_problem(api.post("/v1/messages", content=chunks(),
                            headers={"Content-Type": "application/json"}), 413)
    exact = b" " * (1024 * 1024 - 2) + b"{}"
    r = api.post("/v1/messages", content=exact, headers={"Content-Type": "application/json"})
    assert r.status_code == 422  # read, parsed, refused for its content
    assert_problem(api.post("/v1/messages", content=exact + b" ",  # 1 MiB + 1
                            headers={"Content-Type": "application/json"}), 413)
    assert_problem(api.post("/v1/messages", content=b"phone=1",
                            headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert count_messages(api_stack) == 0


def test_a_key_past_the_rate_limit_gets_429_with_retry_after(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    slow = make_stack(pg_url, redis_url, FIBOSMS_API_RATE_LIMIT="2")
    one, two = make_token(slow.db, "limited-1", "read"), make_token(slow.db, "limited-2", "read")
    with serve_api(slow.settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        codes: list[httpx.Response] = []
        while len(codes) < 20 and 429 not in (c.status_code for c in codes):
            codes.append(client.get("/v1/messages?limit=1",
                                    headers={"Authorization": f"Bearer {one}"}))
        assert [c.status_code for c in codes][:2] == [200, 200]
        limited = [c for c in codes if c.status_code == 429]
        assert limited, [c.status_code for c in codes]
        assert_problem(limited[0], 429)
        assert 1 <= int(limited[0].headers["Retry-After"]) <= 2
        # the limit is per key
        r = client.get("/v1/messages?limit=1", headers={"Authorization": f"Bearer {two}"})
        assert r.status_code == 200
    import redis

    keys = redis.Redis.from_url(redis_url).keys("fibosms:api:rate:*")
    assert len(keys) == 2  # kept in Redis, shared by every API process


def fibosms(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fibosms.cli", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_the_key_commands_print_the_token_once_list_and_revoke(api_stack: Stack) -> None:
    made = fibosms("keys", "create", "shop", "--scope", "send,read", "--json", env=api_stack.env)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert (doc["name"], doc["scopes"]) == ("shop", ["send", "read"])
    token = doc["token"]
    with serve_api(api_stack.settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.get("/v1/messages", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    listed = fibosms("keys", "list", "--json", env=api_stack.env)
    [key] = json.loads(listed.stdout)
    assert key["name"] == "shop" and key["last_used_at"] is not None and key["revoked_at"] is None
    assert token not in listed.stdout
    again = fibosms("keys", "create", "shop", env=api_stack.env)
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = fibosms("keys", "create", "x", "--scope", "root", env=api_stack.env)
    assert bad.returncode == 2 and "--scope" in bad.stderr
    assert fibosms("keys", "revoke", "shop", env=api_stack.env).returncode == 0
    assert fibosms("keys", "revoke", "shop", env=api_stack.env).returncode == 4
    [key] = json.loads(fibosms("keys", "list", "--json", env=api_stack.env).stdout)
    assert key["revoked_at"] is not None


def test_on_the_embedded_default_the_api_accepts_races_and_limits_in_process(
    make_stack: Callable[..., Stack], sandbox: Any, tmp_path: Any
) -> None:
    # Given the embedded default: SQLite ledger and broker, no Redis (the limit is per process)
    from worker.ledger.migrate import upgrade

    db_url = f"sqlite:///{tmp_path}/embedded.db"
    upgrade(db_url)
    api_stack = make_stack(db_url, f"sqla+sqlite:///{tmp_path}/broker.db",
                       FIBOSMS_API_RATE_LIMIT="50")
    token = make_token(api_stack.db, "app", "send", "read")
    api_stack.start_worker()
    with serve_api(api_stack.settings) as url:
        headers = {"Authorization": f"Bearer {token}"}

        # When two clients race with one key, and then one message goes through
        def post(answers: list[httpx.Response], barrier: threading.Barrier) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                barrier.wait()
                answers.append(client.post("/v1/messages", json={"phone": PHONE, "text": "x"},
                                           headers={"Idempotency-Key": "k"}))

        answers: list[httpx.Response] = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=post, args=(answers, barrier)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Then one message, both answers name it, and the worker sends it
        assert sorted(a.status_code for a in answers) == [200, 201]
        mid = answers[0].json()["id"]
        assert answers[1].json()["id"] == mid
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            wait_for(lambda: client.get(f"/v1/messages/{mid}").json()["status"] == "sent",
                     timeout=40)
            # and past 50 requests a second the key is told to wait
            codes: list[int] = []
            while len(codes) < 1000 and 429 not in codes:
                codes.append(client.get("/v1/messages?limit=1").status_code)
        assert 429 in codes and codes[:50] == [200] * 50
    assert count_messages(api_stack) == 1
    assert len(sandbox.accepted()) == 1


def test_an_unreachable_ledger_is_a_503_that_names_nothing(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an API whose database refuses connections (its URL carries a password)
    down = "postgresql+psycopg://fibosms:s3cret-pw@127.0.0.1:1/nowhere"
    api_stack = make_stack(pg_url, redis_url)
    token = make_token(api_stack.db, "k", "send", "read")
    from dataclasses import replace

    settings = replace(api_stack.settings, database_url=down)
    with serve_api(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        # When a client calls it
        r = client.post("/v1/messages", json={"phone": PHONE, "text": "x"},
                        headers={"Authorization": f"Bearer {token}"})
        ready = client.get("/v1/health/ready")
    # Then a problem document asks it to come back, and neither it nor the log names the
    # database, its password or the number
    assert_problem(r, 503)
    assert r.headers["Retry-After"] == "5"
    assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False
    for text in (r.text, ready.text, caplog.text):
        assert "s3cret-pw" not in text and PHONE not in text
    assert "127.0.0.1:1" not in r.text


def test_with_redis_gone_the_limit_fails_open_and_messages_are_still_accepted(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    # Given a rate-limited API whose broker (and so limit store) is a Redis nobody runs
    from tests.fixtures.services import free_port

    gone = f"redis://127.0.0.1:{free_port()}/0"
    api_stack = make_stack(pg_url, gone, FIBOSMS_API_RATE_LIMIT="1000")
    from tests.fixtures.services import clean_ledger

    clean_ledger(api_stack.db)
    token = make_token(api_stack.db, "k", "send", "read")
    with serve_api(api_stack.settings) as url, httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        # When a message is posted
        r = client.post("/v1/messages", json={"phone": PHONE, "text": "x"})
    # Then it is recorded (the sweep publishes it when the broker is back)
    assert r.status_code == 201, r.text
    assert count_messages(api_stack) == 1
    with api_stack.db.sessions() as session:
        m = session.get(Message, r.json()["id"])
        assert m is not None and m.published_at is None
