"""The FIBO client against the sandbox gateway over real HTTP (and against nothing at all).

Uses the ``sandbox`` / ``sandbox_settings`` fixtures of ``tests/fixtures/sandbox.py``:
1 s connect and read timeouts.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal

import pytest
import requests

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.sockets import read_request, refused_port, serving
from worker.errors import (
    AccountError,
    AmbiguousError,
    BadResponse,
    FiboError,
    NotSent,
    PermanentError,
    TransientError,
    UnreadableReply,
)
from worker.gateway import FiboClient, SendReceipt, Totals
from worker.sandbox import SandboxServer
from worker.settings import Settings

PHONE = "0912345678"
#: what a careless client breaks: &, +, #, %, =, ?, a newline and Vietnamese diacritics
TRICKY_TEXT = "Mã OTP: 12&34 + 5#6 = 100% ?x=1\nĐừng chia sẻ — cảm ơn!"


def fast_client(settings: Settings, **overrides: float | int) -> FiboClient:
    """A client whose backoffs are milliseconds, so retries cost no test time."""
    options: dict[str, float | int] = {
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        "backoff_jitter_seconds": 0.0,
    }
    options.update(overrides)
    return FiboClient(settings, **options)  # type: ignore[arg-type]


@pytest.fixture
def client(sandbox_settings: Settings) -> Iterator[FiboClient]:
    with fast_client(sandbox_settings) as c:
        yield c


@pytest.fixture
def dead_port() -> int:
    """A local port with nothing listening: connections to it are refused."""
    return refused_port()


def calls_to(sandbox: SandboxServer, operation: str) -> int:
    return sum(1 for c in sandbox.calls() if c.operation == operation)


def attempt_lines(caplog: pytest.LogCaptureFixture, op: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "fibosms.gateway" and getattr(r, "fibo_op", None) == op
    ]


# -- success -----------------------------------------------------------------------------


def test_a_send_is_accepted_and_the_text_arrives_intact(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    receipt = client.send(PHONE, TRICKY_TEXT, sender="FIBO&Co #1", service_type=1, sms_guid="m-42")
    assert receipt == SendReceipt(code=200, message="Sending...")
    [accepted] = sandbox.accepted()
    assert accepted.phone == PHONE
    assert accepted.text == TRICKY_TEXT
    assert accepted.sender == "FIBO&Co #1"
    assert accepted.service_type == 1
    assert accepted.sms_guid == "m-42"


def test_a_plus_in_the_phone_number_is_not_turned_into_a_space(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    client.send("+84912345678", "Xin chao")
    assert sandbox.accepted()[0].phone == "+84912345678"


def test_the_sender_defaults_to_the_settings_brand_name(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    settings = dataclasses.replace(sandbox_settings, sender_name="SHOPVN")
    with fast_client(settings) as c:
        c.send(PHONE, "Xin chao")
    assert sandbox.accepted()[0].sender == "SHOPVN"


def test_the_literal_answer_form_is_read_too(client: FiboClient, sandbox: SandboxServer) -> None:
    sandbox.configure(response_format="literal")
    assert client.send(PHONE, "Xin chao").code == 200
    sandbox.set_balance(4321)
    assert client.balance() == Decimal(4321)


def test_balance_happy_path(client: FiboClient, sandbox: SandboxServer) -> None:
    sandbox.set_balance(1641060)
    balance = client.balance()
    assert isinstance(balance, Decimal)
    assert balance == Decimal(1641060)


def test_totals_happy_path_counts_todays_messages(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    assert client.totals() == Totals(success=0, failed=0, pending=0)
    sandbox.script(
        PHONE, [{"code": 200, "delivery": "failed"}, {"code": 200, "delivery": "pending"}]
    )
    for _ in range(3):
        client.send(PHONE, "Xin chao")
    assert client.totals() == Totals(success=1, failed=1, pending=1)


def test_calls_reuse_one_pooled_keep_alive_connection(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    for _ in range(5):
        client.send(PHONE, "Xin chao")
    client.balance()
    # the sends share one connection of the client's own pool (worker.gateway.burst) …
    assert len(client._pool._idle) == 1
    # … and the read call one of requests'
    manager = client._session.get_adapter(sandbox.url).poolmanager
    pools = [manager.pools[key] for key in manager.pools.keys()]  # noqa: SIM118 - not a dict
    assert sum(pool.num_connections for pool in pools) == 1


def test_concurrent_sends_share_the_client(client: FiboClient, sandbox: SandboxServer) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        receipts = list(pool.map(lambda i: client.send(f"09123456{i:02d}", f"tin {i}"), range(32)))
    assert all(r.code == 200 for r in receipts)
    assert len(sandbox.accepted()) == 32


# -- FIBO result codes -------------------------------------------------------------------


def test_a_transient_code_is_raised_and_not_retried_here(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    sandbox.script(PHONE, [{"code": 2}])
    with pytest.raises(TransientError) as info:
        client.send(PHONE, "Xin chao")
    assert type(info.value) is TransientError
    assert (info.value.code, info.value.http_status) == (2, 200)
    assert info.value.meaning == "system error"
    assert calls_to(sandbox, "SendMaskedSMS") == 1


def test_a_permanent_code_is_a_permanent_error(client: FiboClient, sandbox: SandboxServer) -> None:
    sandbox.script(PHONE, [{"code": 7}])
    with pytest.raises(PermanentError) as info:
        client.send(PHONE, "Xin chao")
    assert type(info.value) is PermanentError
    assert info.value.code == 7
    assert calls_to(sandbox, "SendMaskedSMS") == 1


def test_a_wrong_password_is_an_account_error_on_every_call(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    settings = dataclasses.replace(sandbox_settings, client_pass="not-the-password")
    with fast_client(settings) as c:
        for call in (lambda: c.send(PHONE, "Xin chao"), c.balance, c.totals):
            with pytest.raises(AccountError) as info:
                call()
            assert info.value.code == 3
    # an account error is not worth repeating: one call each
    assert len(sandbox.calls()) == 3


def test_an_empty_balance_is_an_account_error(client: FiboClient, sandbox: SandboxServer) -> None:
    sandbox.set_balance(0)
    with pytest.raises(AccountError) as info:
        client.send(PHONE, "Xin chao")
    assert info.value.code == 14
    assert sandbox.accepted() == []


# -- transport failures ------------------------------------------------------------------


def test_a_send_slower_than_the_read_timeout_is_ambiguous_and_not_retried(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    sandbox.script(PHONE, [{"delay": 3.0}])
    started = time.monotonic()
    with pytest.raises(AmbiguousError) as info:
        client.send(PHONE, "Xin chao")
    assert time.monotonic() - started < 2.5
    assert info.value.code is None and info.value.http_status is None
    assert "read timeout" in info.value.meaning
    assert calls_to(sandbox, "SendMaskedSMS") == 1


def test_a_balance_slower_than_the_read_timeout_is_retried_then_transient(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.configure(delay=1.5)
    with fast_client(sandbox_settings, read_attempts=2) as c, pytest.raises(TransientError) as info:
        c.balance()
    assert type(info.value) is TransientError  # not AmbiguousError: nothing was sent
    assert "read timeout" in info.value.meaning
    assert calls_to(sandbox, "GetClientBalance") == 2


def test_a_slow_totals_call_is_transient(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.configure(delay=1.5)
    with fast_client(sandbox_settings, read_attempts=1) as c, pytest.raises(TransientError):
        c.totals()


def test_a_dropped_connection_on_send_is_ambiguous(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    sandbox.script(PHONE, [{"drop": True}])
    with pytest.raises(AmbiguousError) as info:
        client.send(PHONE, "Xin chao")
    assert info.value.code is None
    assert calls_to(sandbox, "SendMaskedSMS") == 1


def test_a_drop_after_acceptance_is_why_ambiguous_is_not_retried(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    sandbox.script(PHONE, [{"code": 200, "drop": True}])
    with pytest.raises(AmbiguousError):
        client.send(PHONE, "Xin chao")
    assert len(sandbox.accepted()) == 1  # the gateway took it: a retry would send twice


def test_a_502_page_is_transient_with_its_status(
    client: FiboClient, sandbox: SandboxServer
) -> None:
    sandbox.script(PHONE, [{"http": 502}])
    with pytest.raises(BadResponse) as info:
        client.send(PHONE, "Xin chao")
    assert isinstance(info.value, TransientError)
    assert info.value.http_status == 502
    assert info.value.code is None
    assert calls_to(sandbox, "SendMaskedSMS") == 1  # a send is retried only when not sent


UNREADABLE_200 = {
    "html with 200": "<html><body>Service Unavailable</body></html>",
    "empty": "",
    "truncated": '<string xmlns="http://tempuri.org/">&lt;SMS&gt;&lt;Code&gt;20',
    "garbage": "\x00\x01 not xml at all \ufffd",
    "no result code": "<string>Sending...</string>",
}


@pytest.mark.parametrize("body", UNREADABLE_200.values(), ids=UNREADABLE_200.keys())
def test_a_send_answered_200_with_an_unreadable_body_is_ambiguous(
    client: FiboClient, sandbox: SandboxServer, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fibosms.gateway")
    sandbox.script(PHONE, [{"body": body, "status": 200}])
    with pytest.raises(UnreadableReply) as info:
        client.send(PHONE, "Xin chao")
    assert isinstance(info.value, AmbiguousError)
    assert (info.value.code, info.value.http_status) == (None, 200)
    assert calls_to(sandbox, "SendMaskedSMS") == 1  # never repeated here: it may have gone out
    [line] = attempt_lines(caplog, "send")
    assert line.fibo_outcome == "UnreadableReply"  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", UNREADABLE_200.values(), ids=UNREADABLE_200.keys())
def test_a_send_answered_with_a_redirect_or_error_status_stays_transient(
    client: FiboClient, sandbox: SandboxServer, body: str
) -> None:
    for status in (302, 503):
        sandbox.script(PHONE, [{"body": body, "status": status}])
        with pytest.raises(BadResponse) as info:
            client.send(PHONE, "Xin chao")
        assert not isinstance(info.value, AmbiguousError)
        assert info.value.http_status == status


def test_connection_refused_is_not_sent_and_retried(
    sandbox_settings: Settings, dead_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fibosms.gateway")
    settings = dataclasses.replace(sandbox_settings, api_url=f"http://127.0.0.1:{dead_port}")
    with fast_client(settings, send_attempts=4) as c, pytest.raises(NotSent) as info:
        c.send(PHONE, "Xin chao")
    assert info.value.code is None and info.value.http_status is None
    assert "refused" in info.value.meaning
    assert len(attempt_lines(caplog, "send")) == 4


def test_the_read_calls_are_retried_on_refusal_too(
    sandbox_settings: Settings, dead_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fibosms.gateway")
    settings = dataclasses.replace(sandbox_settings, api_url=f"http://127.0.0.1:{dead_port}")
    with fast_client(settings, read_attempts=3) as c:
        with pytest.raises(NotSent):
            c.balance()
        with pytest.raises(NotSent):
            c.totals()
    assert len(attempt_lines(caplog, "balance")) == 3
    assert len(attempt_lines(caplog, "totals")) == 3


def test_a_send_succeeds_when_the_gateway_comes_up_between_attempts(
    sandbox_settings: Settings, dead_port: int
) -> None:
    # Given a gateway that is down for the first attempt
    late = SandboxServer("CLSANDBOX01", SANDBOX_PASSWORD, port=dead_port)
    settings = dataclasses.replace(sandbox_settings, api_url=f"http://127.0.0.1:{dead_port}")
    client = fast_client(
        settings, send_attempts=5, backoff_initial_seconds=0.3, backoff_max_seconds=0.5
    )
    with client, ThreadPoolExecutor(max_workers=1) as pool:
        # When it comes up while the client backs off
        future = pool.submit(client.send, PHONE, "Xin chao")
        time.sleep(0.1)
        late.start()
        try:
            # Then the retried send goes through, once
            assert future.result(timeout=10).code == 200
            assert len(late.accepted()) == 1
        finally:
            late.stop()


def test_an_unresolvable_host_is_not_sent(sandbox_settings: Settings) -> None:
    settings = dataclasses.replace(sandbox_settings, api_url="http://fibo-gateway.invalid")
    with fast_client(settings, send_attempts=1) as c, pytest.raises(NotSent):
        c.send(PHONE, "Xin chao")


def test_an_unusable_url_stops_the_account(sandbox_settings: Settings) -> None:
    settings = dataclasses.replace(sandbox_settings, api_url="fibo.example")
    with fast_client(settings) as c, pytest.raises(AccountError) as info:
        c.send(PHONE, "Xin chao")
    assert "FIBOSMS_API_URL" in info.value.meaning


# -- transport failures the sandbox cannot stage: a raw socket plays the gateway -----------


@contextmanager
def raw_gateway(respond: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A socket server that reads each request, then lets ``respond`` misbehave on it."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            read_request(conn)  # misbehaving answers follow whole requests and cut ones alike
            respond(conn, stop)

    with serving(handle) as port:
        yield f"http://127.0.0.1:{port}"


def _head(extra: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n{extra}\r\n".encode()


def truncated(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("Content-Length: 200\r\n") + b"<string>&lt;SMS&gt;")


def broken_chunks(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("Transfer-Encoding: chunked\r\n") + b"40\r\n<string>&lt;SMS")


def reset(conn: socket.socket, stop: threading.Event) -> None:
    # SO_LINGER 0: close() sends RST instead of FIN
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def headers_then_silence(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("Content-Length: 100\r\n") + b"<string>")
    stop.wait(3)


def bad_gzip(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_head("Content-Length: 10\r\nContent-Encoding: gzip\r\n") + b"not gzip!!")


def oversized(conn: socket.socket, stop: threading.Event) -> None:
    size = 2 * 1024 * 1024
    conn.sendall(_head(f"Content-Length: {size}\r\n"))
    # a slow, large answer: the client stops reading at its cap and hangs up
    for _ in range(size // 65536):
        try:
            conn.sendall(b" " * 65536)
        except OSError:
            return


CUT_AFTER_SENDING = {
    "body shorter than Content-Length": truncated,
    "chunked encoding cut": broken_chunks,
    "connection reset": reset,
    "read timeout mid-body": headers_then_silence,
    "undecodable gzip": bad_gzip,
}


@pytest.mark.parametrize("respond", CUT_AFTER_SENDING.values(), ids=CUT_AFTER_SENDING.keys())
def test_a_send_cut_after_the_request_left_is_ambiguous(
    sandbox_settings: Settings,
    respond: Callable[[socket.socket, threading.Event], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fibosms.gateway")
    with raw_gateway(respond) as url:
        settings = dataclasses.replace(sandbox_settings, api_url=url)
        with fast_client(settings) as c, pytest.raises(AmbiguousError) as info:
            c.send(PHONE, "Xin chao")
    assert info.value.code is None
    assert len(attempt_lines(caplog, "send")) == 1  # never repeated


@pytest.mark.parametrize("respond", CUT_AFTER_SENDING.values(), ids=CUT_AFTER_SENDING.keys())
def test_a_balance_cut_short_is_transient(
    sandbox_settings: Settings, respond: Callable[[socket.socket, threading.Event], None]
) -> None:
    with raw_gateway(respond) as url:
        settings = dataclasses.replace(sandbox_settings, api_url=url)
        with fast_client(settings, read_attempts=1) as c, pytest.raises(TransientError) as info:
            c.balance()
    assert type(info.value) is TransientError


def test_a_send_answered_200_over_the_size_cap_is_ambiguous(sandbox_settings: Settings) -> None:
    with raw_gateway(oversized) as url:
        settings = dataclasses.replace(sandbox_settings, api_url=url)
        with fast_client(settings) as c, pytest.raises(UnreadableReply) as info:
            c.send(PHONE, "Xin chao")
    assert "over" in info.value.meaning
    assert info.value.http_status == 200


def html_with_200(conn: socket.socket, stop: threading.Event) -> None:
    page = b"<html><body>maintenance</body></html>"
    conn.sendall(_head(f"Content-Length: {len(page)}\r\n") + page)


def test_the_read_calls_answered_200_with_html_stay_transient(sandbox_settings: Settings) -> None:
    # balance and totals change nothing at the gateway: asking again is always safe
    with raw_gateway(html_with_200) as url:
        settings = dataclasses.replace(sandbox_settings, api_url=url)
        with fast_client(settings, read_attempts=2) as c:
            for call in (c.balance, c.totals):
                with pytest.raises(BadResponse) as info:
                    call()
                assert not isinstance(info.value, AmbiguousError)
                assert info.value.http_status == 200


def test_a_balance_over_the_size_cap_is_a_bad_response(sandbox_settings: Settings) -> None:
    with raw_gateway(oversized) as url:
        settings = dataclasses.replace(sandbox_settings, api_url=url)
        with fast_client(settings, read_attempts=1) as c, pytest.raises(BadResponse) as info:
            c.balance()
    assert "over" in info.value.meaning


# -- the password stays secret -----------------------------------------------------------


def _scenarios(
    sandbox: SandboxServer, settings: Settings, dead_port: int
) -> dict[str, Callable[[], object]]:
    refused = dataclasses.replace(settings, api_url=f"http://127.0.0.1:{dead_port}")
    client = fast_client(settings, read_attempts=2)
    down = fast_client(refused)

    def scripted(action: dict[str, object]) -> Callable[[], object]:
        def run() -> object:
            sandbox.script(PHONE, [action])
            return client.send(PHONE, "Xin chao")

        return run

    def slow(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            sandbox.configure(delay=1.5)
            try:
                return call()
            finally:
                sandbox.configure(delay=0.0)

        return run

    stalled = fast_client(dataclasses.replace(settings, call_deadline_seconds=1.2))

    def trickled(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            sandbox.configure(trickle=0.1)
            try:
                return call()
            finally:
                sandbox.configure(trickle=0.0)

        return run

    def send_trickled() -> object:
        sandbox.script(PHONE, [{"trickle": 0.1}])
        return stalled.send(PHONE, "Xin chao")

    def empty_balance() -> object:
        sandbox.set_balance(0)
        return client.send(PHONE, "Xin chao")

    return {
        "send refused": lambda: down.send(PHONE, "Xin chao"),
        "balance refused": down.balance,
        "totals refused": down.totals,
        "send read timeout": scripted({"delay": 3.0}),
        "balance read timeout": slow(client.balance),
        "totals read timeout": slow(client.totals),
        "send dropped": scripted({"drop": True}),
        "send 502": scripted({"http": 502}),
        "send garbage": scripted({"body": "\x00<html>", "status": 200}),
        "send past the deadline": send_trickled,
        "balance past the deadline": trickled(stalled.balance),
        "totals past the deadline": trickled(stalled.totals),
        "send code 2": scripted({"code": 2}),
        "send code 7": scripted({"code": 7}),
        "send code 14": empty_balance,
    }


SCENARIOS = [
    "send refused", "balance refused", "totals refused", "send read timeout",
    "balance read timeout", "totals read timeout", "send dropped", "send 502", "send garbage",
    "send past the deadline", "balance past the deadline", "totals past the deadline",
    "send code 2", "send code 7", "send code 14",
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_error_path_leaks_the_password(
    scenario: str,
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    dead_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given every logger at DEBUG, urllib3's included, even after the client quieted them
    caplog.set_level(logging.DEBUG)
    run = _scenarios(sandbox, sandbox_settings, dead_port)[scenario]
    for name in ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection"):
        caplog.set_level(logging.DEBUG, logger=name)

    # When the call fails
    with pytest.raises(FiboError) as info:
        run()
    exc = info.value
    if "deadline" in scenario:  # the path under test, not some earlier failure
        assert "call deadline" in exc.meaning

    # Then nothing it left behind holds the password
    texts = [
        str(exc),
        repr(exc),
        exc.meaning,
        "".join(traceback.format_exception(exc)),
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *(str(r.args) for r in caplog.records),
    ]
    for text in texts:
        assert SANDBOX_PASSWORD not in text
        assert "clientPass=s" not in text
    # and nothing is chained to it that a log handler might walk into
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert any(r.name == "fibosms.gateway" for r in caplog.records)


def test_the_leak_check_would_catch_requests_own_text(dead_port: int) -> None:
    # the control: requests itself puts the query string, password and all, in its message
    url = f"http://127.0.0.1:{dead_port}/SendMT/x?clientPass={SANDBOX_PASSWORD}"
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(url, timeout=1)
    assert SANDBOX_PASSWORD in str(info.value)


def test_urllib3_request_lines_are_scrubbed_even_at_debug(
    client: FiboClient, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    client.send(PHONE, "Xin chao")
    client.balance()
    client.totals()
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    # sends go out over the client's own connections (worker.gateway.burst), which log no
    # request line; the read calls go through requests
    assert any("GetClientBalance" in line for line in urllib3_lines)  # the line was logged …
    assert all(SANDBOX_PASSWORD not in line for line in urllib3_lines)  # … masked
    assert SANDBOX_PASSWORD not in caplog.text


def test_one_log_line_per_call_with_a_masked_phone_and_no_text(
    client: FiboClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fibosms.gateway")
    client.send(PHONE, "Mã OTP của bạn là 987654")
    [line] = attempt_lines(caplog, "send")
    message = line.getMessage()
    assert "0912***678" in message
    assert PHONE not in message and "987654" not in message
    assert "code=200" in message and "http=200" in message and "ms=" in message
    assert line.fibo_code == 200  # type: ignore[attr-defined]


def test_the_clients_repr_shows_neither_password_nor_session(client: FiboClient) -> None:
    text = repr(client)
    assert SANDBOX_PASSWORD not in text
    assert "Session" not in text and "session" not in text
    assert "CLSANDBOX01" in text


def test_the_soap_body_escapes_the_credentials(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    # a password with XML's special characters must reach the gateway as itself: the
    # sandbox accepts only its own password, so a mangled one would answer 3
    tricky = SandboxServer("CL<&>01", "p&ss<w>rd\"'", port=0).start()
    try:
        settings = dataclasses.replace(
            sandbox_settings, api_url=tricky.url, client_no="CL<&>01", client_pass="p&ss<w>rd\"'"
        )
        with fast_client(settings) as c:
            assert c.totals() == Totals(0, 0, 0)
            assert c.balance() >= 0
    finally:
        tricky.stop()
