"""The client's total deadline per call, against gateways that answer one byte at a time.

Socket timeouts bound each read alone: these gateways never stay silent long enough to trip
the 1 s read timeout of the ``sandbox_settings`` fixture, yet never finish either.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from urllib3.connection import HTTPConnection

from tests.fixtures import sockets
from tests.fixtures.sockets import serving
from worker.errors import AmbiguousError, NotSent, TransientError
from worker.gateway import FiboClient
from worker.gateway.deadline import Exchange, release
from worker.sandbox import SandboxServer
from worker.settings import Settings

PHONE = "0912345678"
DEADLINE = 2.0
#: what the deadline may be overshot by: the watchdog's wake-up and the thread's return
MARGIN = 0.75
BYTE_EVERY = 0.1
ANSWER = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
    b"&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;Sending...&lt;/Message&gt;"
    b"&lt;/SMS&gt;</string>"
)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)


def fast_client(settings: Settings, **overrides: float | int) -> FiboClient:
    options: dict[str, float | int] = {
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        "backoff_jitter_seconds": 0.0,
    }
    options.update(overrides)
    return FiboClient(settings, **options)  # type: ignore[arg-type]


@contextmanager
def trickling_gateway(
    trickled: Callable[[], bytes], head: bytes = b"", *, read_request: bool = True
) -> Iterator[str]:
    """Answers every request with ``head`` at once, then ``trickled()`` one byte at a time
    (without ``read_request``, as soon as the connection is accepted)."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            if read_request and sockets.read_request(conn) is None:
                return
            try:
                conn.sendall(head)
                for byte in trickled():
                    if stop.wait(BYTE_EVERY):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client hung up: what a deadline does

    with serving(answer) as port:
        yield f"http://127.0.0.1:{port}"


def settings_for(base: Settings, url: str, deadline: float = DEADLINE) -> Settings:
    return dataclasses.replace(base, api_url=url, call_deadline_seconds=deadline)


TRICKLES = {
    # status line and headers one byte at a time: requests never even sees a response
    "headers trickled": (lambda: HEAD + ANSWER, b""),
    # headers at once, then the body one byte at a time
    "body trickled": (lambda: ANSWER, HEAD),
}


@pytest.mark.parametrize(("trickled", "head"), TRICKLES.values(), ids=TRICKLES.keys())
def test_a_trickled_send_ends_ambiguous_at_the_deadline(
    sandbox_settings: Settings,
    trickled: Callable[[], bytes],
    head: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fibosms.gateway")
    with trickling_gateway(trickled, head) as url, fast_client(
        settings_for(sandbox_settings, url)
    ) as client:
        started = time.monotonic()
        with pytest.raises(AmbiguousError) as info:
            client.send(PHONE, "Xin chao")
        elapsed = time.monotonic() - started
    # the whole answer would take over 20 s; the read timeout (1 s) never trips
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + MARGIN
    assert "call deadline (2 s)" in info.value.meaning
    assert info.value.__cause__ is None and info.value.__context__ is None
    sends = [r for r in caplog.records if getattr(r, "fibo_op", None) == "send"]
    assert len(sends) == 1  # never repeated: it may have been accepted


@pytest.mark.parametrize(("trickled", "head"), TRICKLES.values(), ids=TRICKLES.keys())
def test_a_trickled_balance_is_transient_within_its_deadline(
    sandbox_settings: Settings, trickled: Callable[[], bytes], head: bytes
) -> None:
    with trickling_gateway(trickled, head) as url, fast_client(
        settings_for(sandbox_settings, url), read_attempts=5
    ) as client:
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            client.balance()
        elapsed = time.monotonic() - started
    assert type(info.value) is TransientError
    # a read is retried, but the retries live inside the same deadline
    assert elapsed < DEADLINE + MARGIN
    assert "call deadline" in info.value.meaning


# -- against the sandbox's trickle ------------------------------------------------------------


def test_a_send_to_the_trickling_sandbox_is_ambiguous_within_the_deadline(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    # Given a gateway that answers one byte every 100 ms (its read timeout never trips)
    sandbox.script(PHONE, [{"trickle": BYTE_EVERY}])
    with fast_client(settings_for(sandbox_settings, sandbox.url)) as client:
        # When a message is sent
        started = time.monotonic()
        with pytest.raises(AmbiguousError) as info:
            client.send(PHONE, "Xin chao")
        elapsed = time.monotonic() - started
    # Then the call ends at its deadline, its outcome unknown
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + MARGIN
    assert "call deadline" in info.value.meaning
    assert (info.value.code, info.value.http_status) == (None, None)
    # and unknown it is: the gateway did accept the message
    assert len(sandbox.accepted()) == 1
    assert sum(1 for c in sandbox.calls() if c.operation == "SendMaskedSMS") == 1


@pytest.mark.parametrize("call", ["balance", "totals"])
def test_a_read_from_the_trickling_sandbox_is_transient_within_the_deadline(
    sandbox: SandboxServer, sandbox_settings: Settings, call: str
) -> None:
    sandbox.configure(trickle=BYTE_EVERY)
    with fast_client(settings_for(sandbox_settings, sandbox.url), read_attempts=3) as client:
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            getattr(client, call)()
        elapsed = time.monotonic() - started
    assert type(info.value) is TransientError  # a read: safe to ask again later
    assert elapsed < DEADLINE + MARGIN
    assert "call deadline" in info.value.meaning


#: a TLS record header announcing a 16 KiB handshake record, which then never completes
TLS_RECORD_HEADER = b"\x16\x03\x03\x40\x00"


def test_a_stalled_tls_handshake_is_cut_at_the_deadline_and_not_sent(
    sandbox_settings: Settings,
) -> None:
    # Given an https gateway whose handshake trickles, under a connect timeout longer than
    # the call's deadline
    with trickling_gateway(lambda: b"\x00" * 1000, TLS_RECORD_HEADER, read_request=False) as url:
        settings = dataclasses.replace(
            settings_for(sandbox_settings, url.replace("http://", "https://")),
            connect_timeout_seconds=30.0,
        )
        with fast_client(settings) as client:
            started = time.monotonic()
            with pytest.raises(NotSent) as info:
                client.send(PHONE, "Xin chao")
            elapsed = time.monotonic() - started
    # Then the call ends at its deadline, and the request never left: safe to repeat
    assert elapsed < DEADLINE + MARGIN
    assert "before the request left" in info.value.meaning


def test_a_tls_handshake_timeout_is_not_sent_and_retried(
    sandbox_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # urllib3 reports a handshake that timed out as a read timeout; nothing was sent yet
    caplog.set_level(logging.INFO, logger="fibosms.gateway")
    with trickling_gateway(lambda: b"\x00" * 100, TLS_RECORD_HEADER, read_request=False) as url:
        settings = dataclasses.replace(
            sandbox_settings, api_url=url.replace("http://", "https://"),
            connect_timeout_seconds=0.5,
        )
        with fast_client(settings, send_attempts=2) as client, pytest.raises(NotSent) as info:
            client.send(PHONE, "Xin chao")
    assert "before the request left" in info.value.meaning
    sends = [r for r in caplog.records if getattr(r, "fibo_op", None) == "send"]
    assert len(sends) == 2  # repeated: it could not have been sent


def test_retries_of_a_send_that_never_left_stop_at_the_deadline(
    sandbox_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fibosms.gateway")
    dead = f"http://127.0.0.1:{sockets.refused_port()}"
    settings = settings_for(sandbox_settings, dead, deadline=1.0)
    with fast_client(
        settings, send_attempts=1000, backoff_initial_seconds=0.3, backoff_max_seconds=0.3
    ) as client:
        started = time.monotonic()
        with pytest.raises(NotSent):
            client.send(PHONE, "Xin chao")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + MARGIN
    attempts = [r for r in caplog.records if getattr(r, "fibo_op", None) == "send"]
    assert 2 <= len(attempts) <= 6


def test_the_client_works_normally_after_a_call_was_cut(
    sandbox_settings: Settings, sandbox: SandboxServer
) -> None:
    # Given a client whose call was cut at its deadline on a trickling gateway
    with (
        trickling_gateway(lambda: HEAD + ANSWER) as url,
        fast_client(settings_for(sandbox_settings, url, deadline=1.0)) as cut,
    ):
        with pytest.raises(AmbiguousError):
            cut.send(PHONE, "Xin chao")
        cut_threads = threading.active_count()
    # Then a healthy gateway's answers arrive whole, on a client under the same deadline
    with fast_client(settings_for(sandbox_settings, sandbox_settings.api_url, 1.0)) as client:
        for _ in range(20):
            assert client.send(PHONE, "Xin chao").code == 200
        assert client.balance() >= 0
    # and the deadlines cost one watchdog thread, not one per call
    assert threading.active_count() <= cut_threads + 1


def test_calls_cut_at_their_deadline_leave_the_others_on_the_pool_alone(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    # Given one client shared by 8 threads, every fourth send trickling past its deadline
    stalled = [f"09120001{i:02d}" for i in range(8)]
    for phone in stalled:
        sandbox.script(phone, [{"trickle": BYTE_EVERY}])
    settings = settings_for(sandbox_settings, sandbox.url, deadline=1.0)

    def send(i: int) -> str:
        phone = stalled[i // 4] if i % 4 == 0 else f"09120002{i % 100:02d}"
        try:
            return f"{client.send(phone, f'tin {i}').code}"
        except AmbiguousError:
            return "ambiguous"

    with fast_client(settings) as client, ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(send, range(32)))

    # Then exactly the trickled ones end ambiguous; the pooled connections the others
    # reuse were never cut by a late alarm
    assert [i for i, o in enumerate(outcomes) if o == "ambiguous"] == list(range(0, 32, 4))
    assert all(o == "200" for i, o in enumerate(outcomes) if i % 4)
    assert len(sandbox.accepted()) == 32


# -- the exchange and its connection, with real sockets ------------------------------------


@pytest.fixture
def connection() -> Iterator[tuple[HTTPConnection, socket.socket]]:
    ours, theirs = socket.socketpair()
    conn = HTTPConnection("127.0.0.1", 9)
    conn.sock = ours
    try:
        yield conn, theirs
    finally:
        ours.close()
        theirs.close()


def test_the_alarm_cuts_a_read_blocked_on_the_exchanges_socket(
    connection: tuple[HTTPConnection, socket.socket],
) -> None:
    conn, _ = connection
    exchange = Exchange(time.monotonic() + 60)
    exchange.claim(conn, sending=True)
    assert exchange.left
    assert conn.sock is not None
    threading.Timer(0.2, exchange.fire).start()
    started = time.monotonic()
    assert conn.sock.recv(10) == b""  # unblocked by the cut, as by an end of stream
    assert time.monotonic() - started < 2
    assert exchange.finish() is True


def test_a_late_alarm_never_cuts_a_connection_back_in_its_pool(
    connection: tuple[HTTPConnection, socket.socket],
) -> None:
    conn, theirs = connection
    exchange = Exchange(time.monotonic() + 60)
    exchange.claim(conn, sending=True)
    release(conn)  # the answer was read whole; another call may take this connection now
    exchange.fire()
    assert conn.sock is not None
    theirs.sendall(b"still open")
    assert conn.sock.recv(10) == b"still open"


def test_a_connection_made_after_the_deadline_is_cut_before_anything_leaves(
    connection: tuple[HTTPConnection, socket.socket],
) -> None:
    conn, theirs = connection
    exchange = Exchange(time.monotonic() - 1)
    exchange.fire()
    exchange.claim(conn, sending=True)
    assert not exchange.left
    theirs.settimeout(2)
    assert theirs.recv(10) == b""  # our side was shut down: nothing will come


def test_a_finished_exchange_ignores_its_alarm(
    connection: tuple[HTTPConnection, socket.socket],
) -> None:
    conn, theirs = connection
    exchange = Exchange(time.monotonic() + 60)
    exchange.claim(conn, sending=True)
    assert exchange.finish() is False
    exchange.fire()
    theirs.sendall(b"x")
    assert conn.sock is not None and conn.sock.recv(1) == b"x"
