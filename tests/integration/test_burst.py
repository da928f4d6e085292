"""Many sends from one thread (``FiboClient.burst``), against the sandbox over real HTTP and
HTTPS, and against sockets that misbehave as a gateway can.

``FiboClient.send`` is itself a burst of one, so every test of ``test_client.py`` and
``test_client_deadline.py`` runs through the same engine; these cover what only a burst
(or TLS) shows: outcomes kept apart by key, the bound on calls in flight, reused and stale
connections, certificates.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sockets import read_request, refused_port, serving
from tests.integration.test_client import fast_client
from tests.integration.test_client_deadline import ANSWER, HEAD, trickling_gateway
from worker.errors import AmbiguousError, FiboError, NotSent, PermanentError
from worker.gateway import FiboClient, SendReceipt
from worker.gateway.burst import Burst
from worker.ratelimit import LocalRateLimiter
from worker.sandbox import SandboxServer
from worker.settings import Settings


def phone(i: int) -> str:
    return f"0912{i:06d}"


def burst_of(client: FiboClient, *, bounded: bool = True) -> Burst:
    burst = client.burst(bounded=bounded)
    assert burst is not None, "no proxy is configured: the client must burst"
    return burst


def send_all(
    burst: Burst, messages: list[tuple[Any, str, str]]
) -> dict[Any, SendReceipt | FiboError]:
    """Start every message as room allows; every outcome by key."""
    outcomes: dict[Any, SendReceipt | FiboError] = {}
    waiting = list(messages)
    while waiting or burst.pending:
        while waiting and burst.room():
            key, to, text = waiting.pop(0)
            burst.start(key, to, text, masked_phone="masked")
        for key, outcome in burst.wait():
            assert key not in outcomes, f"{key} came back twice"
            outcomes[key] = outcome
    return outcomes


# -- over plain HTTP ---------------------------------------------------------------------


def test_each_message_of_a_burst_goes_out_once_and_comes_back_under_its_own_key(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.script(phone(7), [{"code": 7}])  # the subscriber refuses
    sandbox.script(phone(13), [{"drop": True}])  # cut without an answer
    messages = [(i, phone(i), f"tin nhan {i}") for i in range(40)]
    with fast_client(sandbox_settings) as client, burst_of(client) as burst:
        outcomes = send_all(burst, messages)
    assert set(outcomes) == set(range(40))
    assert isinstance(outcomes[7], PermanentError) and outcomes[7].code == 7
    assert isinstance(outcomes[13], AmbiguousError)
    accepted = {m.phone: m.text for m in sandbox.accepted()}
    assert accepted == {phone(i): f"tin nhan {i}" for i in range(40) if i not in (7, 13)}
    assert all(isinstance(outcomes[i], SendReceipt) for i in range(40) if i not in (7, 13))
    sends = [c.phone or "" for c in sandbox.calls() if c.operation == "SendMaskedSMS"]
    assert sorted(sends) == sorted(phone(i) for i in range(40))  # each exactly once


def test_a_bounded_burst_keeps_at_most_the_batch_concurrency_in_flight(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.script(None, [{"delay": 0.2}] * 2)
    settings = dataclasses.replace(sandbox_settings, batch_concurrency=2)
    with fast_client(settings) as client, burst_of(client) as burst:
        burst.start(1, phone(1), "a", masked_phone="m")
        burst.start(2, phone(2), "b", masked_phone="m")
        assert not burst.room()
        with pytest.raises(RuntimeError):
            burst.start(3, phone(3), "c", masked_phone="m")
        ended = burst.wait()
        assert burst.room()
        burst.start(3, phone(3), "c", masked_phone="m")
        while burst.pending:
            ended += burst.wait()
    assert sorted(k for k, _ in ended) == [1, 2, 3]
    assert len(sandbox.accepted()) == 3


def test_calls_beyond_the_bound_wait_for_room_and_all_go_out(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.script(None, [{"delay": 0.2}] * 6)
    settings = dataclasses.replace(sandbox_settings, batch_concurrency=3)
    with fast_client(settings) as client, burst_of(client) as burst:
        started = time.monotonic()
        outcomes = send_all(burst, [(i, phone(i), "x") for i in range(6)])
        elapsed = time.monotonic() - started
    assert all(isinstance(o, SendReceipt) for o in outcomes.values())
    assert 0.4 <= elapsed < 1.5  # two waves of three, not one of six


def test_an_unbounded_burst_is_not_held_to_the_batch_concurrency(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    settings = dataclasses.replace(sandbox_settings, batch_concurrency=1)
    with fast_client(settings) as client, burst_of(client, bounded=False) as burst:
        for i in range(5):
            assert burst.room()
            burst.start(i, phone(i), "x", masked_phone="m")
        outcomes = send_all(burst, [])
    assert all(isinstance(o, SendReceipt) for o in outcomes.values()) and len(outcomes) == 5


def test_closing_a_burst_with_calls_in_flight_closes_their_connections(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.script(None, [{"delay": 0.5}])
    with fast_client(sandbox_settings) as client:
        with burst_of(client) as burst:
            burst.start(1, phone(1), "x", masked_phone="m")
        assert client._pool._idle == []  # an abandoned call's connection is not reused
        assert client.send(phone(2), "y").code == 200


def test_calls_started_while_waiting_for_the_rate_limit_leave_at_its_pace(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    # every call needs a new connection; a burst that slept through its turns in the rate
    # limit would write them all at once at the end, a bunch the limit exists to prevent
    rate = 20.0
    limiter = LocalRateLimiter(rate, capacity=1, reserve=0)
    with fast_client(sandbox_settings) as client, burst_of(client, bounded=False) as burst:
        for i in range(10):
            assert limiter.acquire(1, urgent=True, timeout=5, sleep=burst.pump)
            burst.start(i, phone(i), "x", masked_phone="m")
        outcomes = send_all(burst, [])
    assert all(isinstance(o, SendReceipt) for o in outcomes.values())
    arrivals = sorted(c.time.timestamp() for c in sandbox.calls())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 10
    assert min(gaps) > 0.5 / rate, gaps  # one interval apart (50 ms), give or take


def test_refused_connections_are_retried_then_not_sent(
    sandbox_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fibosms.gateway")
    dead = f"http://127.0.0.1:{refused_port()}"
    settings = dataclasses.replace(sandbox_settings, api_url=dead)
    with fast_client(settings, send_attempts=3) as client, burst_of(client) as burst:
        outcomes = send_all(burst, [(i, phone(i), "x") for i in range(4)])
    assert all(isinstance(o, NotSent) for o in outcomes.values())
    attempts = [r for r in caplog.records if getattr(r, "fibo_op", None) == "send"]
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(attempts) == 12 and len(retries) == 8  # 3 attempts a message, 2 retries


def test_every_call_of_a_trickled_burst_ends_by_its_deadline(
    sandbox_settings: Settings,
) -> None:
    deadline = 1.5
    with trickling_gateway(lambda: ANSWER, HEAD) as url:
        settings = dataclasses.replace(
            sandbox_settings, api_url=url, call_deadline_seconds=deadline
        )
        with fast_client(settings) as client, burst_of(client) as burst:
            started = time.monotonic()
            outcomes = send_all(burst, [(i, phone(i), "x") for i in range(10)])
            elapsed = time.monotonic() - started
    assert elapsed < deadline + 0.5
    assert all(isinstance(o, AmbiguousError) for o in outcomes.values())
    assert all("call deadline" in o.meaning for o in outcomes.values())  # type: ignore[union-attr]


def test_a_connection_the_gateway_closed_while_idle_is_not_reused(
    sandbox_settings: Settings,
) -> None:
    requests_seen: list[bytes] = []

    def answer_then_hang_up(conn: socket.socket, stop: threading.Event) -> None:
        # the whole answer, keep-alive as far as its headers say; closed 50 ms later, as a
        # gateway's idle timeout closes a pooled connection
        with conn:
            request = read_request(conn)
            if request is None:
                return
            requests_seen.append(request)
            conn.sendall(HEAD + ANSWER)
            stop.wait(0.05)

    with serving(answer_then_hang_up) as port:
        settings = dataclasses.replace(sandbox_settings, api_url=f"http://127.0.0.1:{port}")
        with fast_client(settings) as client:
            assert client.send(phone(1), "x").code == 200
            assert len(client._pool._idle) == 1
            time.sleep(0.3)  # the gateway has closed the idle connection by now
            # a reuse would write into a closed connection: an ambiguous outcome
            assert client.send(phone(2), "y").code == 200
    assert len(requests_seen) == 2


def counting_lookups(monkeypatch: pytest.MonkeyPatch, *, fail_first: int = 0) -> list[str]:
    """Every name the process looks up from now on (the real lookup answers); the first
    ``fail_first`` fail as an unreachable resolver's do."""
    names: list[str] = []
    real = socket.getaddrinfo

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(str(host))
        if len(names) <= fail_first:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return names


def test_a_burst_looks_the_gateway_name_up_once_for_all_its_new_connections(
    sandbox: SandboxServer, sandbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.script(None, [{"delay": 0.1}] * 20)  # so that all 20 need a connection of their own
    settings = dataclasses.replace(
        sandbox_settings, api_url=f"http://localhost:{sandbox.port}", batch_concurrency=20
    )
    with fast_client(settings) as client, burst_of(client) as burst:
        names = counting_lookups(monkeypatch)
        outcomes = send_all(burst, [(i, phone(i), "x") for i in range(20)])
    assert all(isinstance(o, SendReceipt) for o in outcomes.values()), outcomes
    assert len(sandbox.accepted()) == 20
    assert names == ["localhost"]


def test_a_failed_lookup_is_not_remembered_the_retry_looks_again(
    sandbox: SandboxServer, sandbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(sandbox_settings, api_url=f"http://localhost:{sandbox.port}")
    with fast_client(settings, send_attempts=3) as client, burst_of(client) as burst:
        names = counting_lookups(monkeypatch, fail_first=1)
        outcomes = send_all(burst, [(1, phone(1), "x")])
    assert isinstance(outcomes[1], SendReceipt), outcomes
    assert names == ["localhost", "localhost"]


# -- over TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and no name), and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=fibosms test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@contextmanager
def tls_in_front_of(
    sandbox: SandboxServer, certificate: tuple[Path, Path]
) -> Iterator[str]:
    """An https address whose connections are decrypted and relayed to the sandbox."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def relay(raw: socket.socket, stop: threading.Event) -> None:
        try:
            raw.settimeout(5)
            tls = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream = socket.create_connection(("127.0.0.1", sandbox.port))
        threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()
        tls.settimeout(None)
        pipe(tls, upstream)

    with serving(relay) as port:
        yield f"https://127.0.0.1:{port}"


def tls_client(
    settings: Settings, url: str, bundle: Path | None, monkeypatch: pytest.MonkeyPatch
) -> FiboClient:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if bundle is None:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    else:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return fast_client(dataclasses.replace(settings, api_url=url))


def test_a_burst_over_tls_checks_the_certificate_against_the_configured_bundle(
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (
        tls_in_front_of(sandbox, certificate) as url,
        tls_client(sandbox_settings, url, certificate[0], monkeypatch) as client,
    ):
        with burst_of(client) as burst:
            outcomes = send_all(burst, [(i, phone(i), f"qua TLS {i}") for i in range(8)])
        again = client.send(phone(99), "lan nua")  # on a connection the burst pooled
        pooled = len(client._pool._idle)
    assert all(isinstance(o, SendReceipt) for o in outcomes.values())
    assert again.code == 200
    assert pooled >= 1
    assert sorted(m.text for m in sandbox.accepted()) == sorted(
        [f"qua TLS {i}" for i in range(8)] + ["lan nua"]
    )


def test_a_certificate_the_bundle_does_not_vouch_for_is_refused_before_anything_leaves(
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (
        tls_in_front_of(sandbox, certificate) as url,
        tls_client(sandbox_settings, url, None, monkeypatch) as client,
        pytest.raises(NotSent) as info,
    ):
        client.send(phone(1), "x")
    assert "certificate was refused" in info.value.meaning
    assert sandbox.calls() == []


def test_a_name_the_certificate_does_not_carry_is_refused(
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the certificate vouches for 127.0.0.1 alone: reached as "localhost", it is refused
    with tls_in_front_of(sandbox, certificate) as url:
        port = url.rsplit(":", 1)[1]
        with tls_client(
            sandbox_settings, f"https://localhost:{port}", certificate[0], monkeypatch
        ) as client, pytest.raises(NotSent) as info:
            client.send(phone(1), "x")
    assert "certificate was refused" in info.value.meaning
    assert sandbox.calls() == []


# -- through a proxy: requests, not the burst -----------------------------------------------


def test_with_a_proxy_configured_there_is_no_burst_and_sends_still_work(
    sandbox: SandboxServer, sandbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", sandbox.url)  # the sandbox serves as a forward proxy
    settings = dataclasses.replace(sandbox_settings, api_url="http://fibo.invalid")
    with fast_client(settings) as client:
        assert client.burst() is None
        assert client.send(phone(1), "qua proxy").code == 200
    assert [m.text for m in sandbox.accepted()] == ["qua proxy"]

