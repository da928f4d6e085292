"""Many ``SendMaskedSMS`` calls driven by one thread over non-blocking keep-alive connections.

A call through requests costs a worker about 0.3 ms of CPU, and a batch's calls each took
a thread of their own, so a bulk worker spent more of its one core on HTTP machinery and
thread switching than on anything else. A :class:`Burst` starts each call on a connection
of its own (taken from the process's :class:`Pool` of idle ones, or opened without
blocking), writes the request, and reads the answers as they arrive, all from the thread
that owns the burst: tens of microseconds a call (``docs/performance.md``).

Every guarantee of the requests path holds, call by call:

* **where a failure got to**: refused, unresolvable, timed out while connecting, a TLS
  certificate refused or a handshake that stalled: nothing was written, so
  :class:`~worker.errors.NotSent`. Once writing the request began on a connection, any
  failure (reset, closed, cut short, silence past the read timeout, the deadline) may have
  reached the gateway: ambiguous, never repeated here.
* **the deadline**: each call, its retries included, ends by ``deadline`` seconds after it
  started; nothing here blocks except ``select``, bounded by the nearest timer, and the
  name lookup, made once a burst by its first call that needs a new connection (requests
  makes one for every new connection).
* **retries**: only of a call that never left, up to the client's attempts, with its
  backoff, and never past the deadline or the retry deadline.
* **the answer**: read in full (capped at ``MAX_BODY_BYTES``) and judged by the client's
  own rules (:meth:`~worker.gateway.client.FiboClient`'s conclusion: parse, classify, one
  log line per attempt).
* **TLS**: verified against the same CA bundle requests would use, with the host's name.

A proxy is the one thing it does not speak: with one configured for the gateway, the
client sends through requests (:meth:`Route.of` answers None).

The password is in every request's query. It lives in the :class:`Route` (whose repr leaves
it out) and in the bytes being written; no reason, log line or exception made here contains
either.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from worker.errors import FiboError, NotSent
from worker.gateway.http1 import Answered, Unreadable, read_answer, request_head
from worker.gateway.parse import SendReceipt
from worker.gateway.transport import Answer, Phase, TransportFailure, cut_verdict

#: bytes asked of a socket per read
RECV_BYTES = 64 * 1024

#: what a finished call handed back: the receipt, or the error it ended with
Outcome = SendReceipt | FiboError
#: (op, masked phone, when the attempt began, what the transport brought) -> the outcome;
#: the client's conclusion, which also logs the attempt's line
Conclude = Callable[[str, str, float, Answer | TransportFailure], Outcome]


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect, between bytes of an answer, and for a whole call."""

    connect: float
    read: float
    deadline: float


@dataclass(frozen=True)
class Retries:
    """When a call that never left is tried again."""

    attempts: int
    #: seconds after the first attempt began, after which no new attempt starts
    within: float
    #: seconds to wait after attempt n
    backoff: Callable[[int], float]
    #: logs that attempt n is repeated after ``sleep`` seconds
    announce: Callable[[int, float], None]


class Route:
    """Where sends go, and the fixed part of every request: built once per client."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        target: str,
        credentials: Mapping[str, str],
        sender: str,
        headers: Mapping[str, str],
        tls: ssl.SSLContext | None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.sender = sender
        self._target = target + ("&" if "?" in target else "?") + urlencode(credentials)
        netloc = f"[{host}]" if ":" in host else host
        default_port = 443 if tls is not None else 80
        self._host_header = netloc if port == default_port else f"{netloc}:{port}"
        self._headers = dict(headers)

    def __repr__(self) -> str:
        return f"Route(host={self.host!r}, port={self.port}, tls={self.tls is not None})"

    @classmethod
    def of(
        cls,
        prepared: requests.PreparedRequest,
        *,
        proxies: Mapping[str, str],
        verify: bool | str | None,
        credentials: Mapping[str, str],
        sender: str,
    ) -> Route | None:
        """The route of ``prepared`` (a request requests would send), or None when only
        requests can send it: through a proxy, with credentials in the URL, or not HTTP."""
        url = prepared.url
        if url is None or requests.utils.select_proxy(url, dict(proxies)):
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.username or not parts.hostname:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            host=parts.hostname,
            port=port,
            target=target,
            credentials=credentials,
            sender=sender,
            headers={k: v for k, v in prepared.headers.items() if isinstance(v, str)},
            tls=tls_context(verify) if parts.scheme == "https" else None,
        )

    def request(self, params: Mapping[str, str]) -> bytes:
        """One GET with ``params`` after the credentials, as requests would write it."""
        return request_head(
            "GET", f"{self._target}&{urlencode(params)}", self._host_header, self._headers
        )


def tls_context(verify: bool | str | None) -> ssl.SSLContext:
    """Certificates checked against requests' own bundle, or the one the settings name."""
    if not isinstance(verify, str):  # never off: the session pins it on
        context = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class Pool:
    """This process's idle connections to the route, shared by its bursts."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def take(self) -> socket.socket | None:
        """An idle connection the gateway has not closed, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock = self._idle.pop()
            if _still_open(sock):
                return sock
            sock.close()

    def give(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _still_open(sock: socket.socket) -> bool:
    """An idle connection with nothing to read: anything readable means the gateway closed
    it (or sent what no request asked for), and either way it is not reused."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return not poller.poll(0)
    except OSError:  # pragma: no cover - a closed descriptor
        return False


# the states of a call
_CONNECTING = "connecting"
_HANDSHAKE = "handshake"
_WRITING = "writing"
_READING = "reading"
_WAITING = "waiting"  # for its next attempt


@dataclass(eq=False)
class _Call:
    key: Any
    request: bytes
    masked_phone: str
    began: float
    deadline: float
    attempt: int = 1
    started: float = 0.0
    state: str = _WAITING
    sock: socket.socket | None = None
    addresses: list[Any] = field(default_factory=list)
    out: memoryview = field(default_factory=lambda: memoryview(b""))
    data: bytearray = field(default_factory=bytearray)
    #: writing the request began on a connection: it may have reached the gateway
    left: bool = False
    #: when the current state gives up (or, waiting, the next attempt starts)
    timer: float = 0.0
    events: int = 0


class Burst:
    """Sends started one by one, their outcomes collected as they end; one thread only.

    ``limit``, when given, bounds the calls in flight (a batch's
    ``FIBOSMS_BATCH_CONCURRENCY``): :meth:`room` says whether another may start.
    """

    def __init__(
        self,
        route: Route,
        pool: Pool,
        *,
        timeouts: Timeouts,
        retries: Retries,
        conclude: Conclude,
        limit: int | None = None,
    ) -> None:
        self._route = route
        self._pool = pool
        self._timeouts = timeouts
        self._retries = retries
        self._conclude = conclude
        self._limit = limit
        self._calls: list[_Call] = []
        self._ended: list[tuple[Any, Outcome]] = []
        self._selector = selectors.DefaultSelector()
        #: the gateway's addresses, looked up by the first call that needed a connection
        self._addresses: list[Any] | None = None

    def __enter__(self) -> Burst:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Calls started and not yet handed back by :meth:`wait`."""
        return len(self._calls) + len(self._ended)

    def room(self) -> bool:
        """Whether another call may start now, within the limit."""
        return self._limit is None or len(self._calls) < self._limit

    def start(
        self,
        key: Any,
        phone: str,
        text: str,
        *,
        sender: str | None = None,
        service_type: int = 0,
        sms_guid: str = "0",
        masked_phone: str,
    ) -> None:
        """Begin sending ``text`` to ``phone``; its outcome comes back from :meth:`wait`
        with ``key``. Past the limit (see :meth:`room`) it raises RuntimeError."""
        if not self.room():
            raise RuntimeError(f"{self._limit} calls are in flight already")
        now = time.monotonic()
        request = self._route.request({
            "senderName": sender if sender is not None else self._route.sender,
            "phoneNumber": phone,
            "smsMessage": text,
            "smsGUID": sms_guid,
            "serviceType": str(service_type),
        })
        call = _Call(key, request, masked_phone, now, now + self._timeouts.deadline)
        self._calls.append(call)
        self._begin(call, now)

    def wait(self, timeout: float | None = None) -> list[tuple[Any, Outcome]]:
        """The calls that ended, at least one unless ``timeout`` (seconds) passes first or
        none is in flight; what arrived while the caller was busy is read before any timer
        is judged."""
        until = None if timeout is None else time.monotonic() + timeout
        while not self._ended and self._calls:
            now = self._turn(until)
            if until is not None and now >= until:
                break
        ended, self._ended = self._ended, []
        return ended

    def pump(self, seconds: float) -> None:
        """Spend ``seconds`` moving the calls in flight along (connecting, writing, reading,
        their timers), keeping what ends for :meth:`wait`: how the burst's thread waits for
        anything else, such as its turn in the rate limit, without holding requests back."""
        until = time.monotonic() + seconds
        while self._turn(until) < until:
            pass

    def _turn(self, until: float | None) -> float:
        """One ``select`` (up to the nearest timer or ``until``), what it found, then the
        timers that are due; the time after."""
        now = time.monotonic()
        limits = [c.timer for c in self._calls]
        if until is not None:
            limits.append(until)
        pause = max(0.0, min(limits, default=now) - now)
        ready = self._selector.select(pause) if self._selector.get_map() else _sleep(pause)
        for key, mask in ready:
            self._advance(key.data, mask)
        now = time.monotonic()
        for call in [c for c in self._calls if c.timer <= now]:
            self._expire(call, now)
        return now

    def close(self) -> None:
        """Abandon whatever is in flight: its sockets are closed, its outcomes unknown."""
        for call in self._calls:
            self._drop(call)
        self._calls = []
        self._selector.close()

    # -- the states ----------------------------------------------------------------------

    def _begin(self, call: _Call, now: float) -> None:
        """Start an attempt: on an idle connection, or on a new one."""
        call.started = now
        call.data = bytearray()
        call.out = memoryview(call.request)
        sock = self._pool.take()
        if sock is not None:
            call.sock = sock
            self._write(call, now)
            return
        if self._addresses is None:
            # once a burst: the lookup blocks this thread, and every call of the burst
            # would otherwise make it again; a failure is not kept, a retry looks again
            try:
                self._addresses = socket.getaddrinfo(
                    self._route.host, self._route.port, 0, socket.SOCK_STREAM
                )
            except OSError:
                self._fail(call, Phase.NOT_SENT, "DNS lookup of the gateway failed")
                return
        call.addresses = list(self._addresses)
        self._connect(call, now)

    def _connect(self, call: _Call, now: float) -> None:
        if not call.addresses:
            self._fail(call, Phase.NOT_SENT, "could not connect (refused)")
            return
        family, kind, proto, _, address = call.addresses.pop(0)
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # out of descriptors, say: nothing was written
            self._fail(call, Phase.NOT_SENT, "could not open a connection")
            return
        call.sock = sock
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(address)
        except OSError:
            err = errno.ECONNREFUSED
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._drop(call)
            self._connect(call, now)
            return
        call.state = _CONNECTING
        call.timer = min(now + self._timeouts.connect, call.deadline)
        self._watch(call, selectors.EVENT_WRITE)

    def _advance(self, call: _Call, mask: int) -> None:
        if call.sock is None:
            return
        now = time.monotonic()
        if call.state == _CONNECTING:
            err = call.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(call)
                self._connect(call, now)
            elif self._route.tls is not None:
                self._handshake_begin(call, now)
            else:
                self._write(call, now)
        elif call.state == _HANDSHAKE:
            self._handshake(call, now)
        elif call.state == _WRITING:
            self._write(call, now)
        elif call.state == _READING:
            self._read(call, now)

    def _handshake_begin(self, call: _Call, now: float) -> None:
        assert call.sock is not None and self._route.tls is not None
        self._unwatch(call)
        try:
            call.sock = self._route.tls.wrap_socket(
                call.sock, server_hostname=self._route.host, do_handshake_on_connect=False
            )
        except (OSError, ValueError):
            self._fail(call, Phase.NOT_SENT, "TLS could not begin, before the request left")
            return
        call.state = _HANDSHAKE
        call.timer = min(now + self._timeouts.read, call.deadline)
        self._handshake(call, now)

    def _handshake(self, call: _Call, now: float) -> None:
        sock = call.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(call, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(call, selectors.EVENT_WRITE)
            return
        except ssl.SSLCertVerificationError:
            self._fail(call, Phase.NOT_SENT, "the gateway's TLS certificate was refused")
            return
        except OSError:
            self._fail(call, Phase.NOT_SENT, "the TLS handshake failed, before the request left")
            return
        self._write(call, now)

    def _write(self, call: _Call, now: float) -> None:
        assert call.sock is not None
        if call.state != _WRITING:
            call.state = _WRITING
            call.timer = min(now + self._timeouts.read, call.deadline)
        call.left = True  # from the first byte on, the gateway may have it
        try:
            while call.out:
                sent = call.sock.send(call.out)
                call.out = call.out[sent:]
                call.timer = min(now + self._timeouts.read, call.deadline)
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._watch(call, selectors.EVENT_WRITE)
            return
        except ssl.SSLWantReadError:
            self._watch(call, selectors.EVENT_READ)
            return
        except OSError:
            self._fail(call, Phase.MAYBE_SENT, "connection reset after the request was sent")
            return
        call.state = _READING
        call.timer = min(now + self._timeouts.read, call.deadline)
        self._watch(call, selectors.EVENT_READ)
        self._read(call, now)

    def _read(self, call: _Call, now: float) -> None:
        assert call.sock is not None
        eof = False
        got = False
        try:
            while True:
                chunk = call.sock.recv(RECV_BYTES)
                if not chunk:
                    eof = True
                    break
                call.data += chunk
                got = True
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except ssl.SSLWantWriteError:
            self._watch(call, selectors.EVENT_WRITE | selectors.EVENT_READ)
        except OSError:
            self._fail(call, Phase.MAYBE_SENT, "connection reset after the request was sent")
            return
        if not got and not eof:
            return
        answer = read_answer(call.data, eof=eof)
        if answer is None:
            call.timer = min(now + self._timeouts.read, call.deadline)
            return
        if isinstance(answer, Unreadable):
            self._fail(call, Phase.MAYBE_SENT, answer.reason)
            return
        self._answered(call, answer, reusable=answer.keep_alive and not eof)

    def _expire(self, call: _Call, now: float) -> None:
        if call.state == _WAITING:
            self._begin(call, now)
            return
        if now >= call.deadline:
            verdict = cut_verdict(call.left, True, None, self._timeouts.deadline)
            self._fail(call, verdict.phase, verdict.reason)
        elif call.state == _CONNECTING:
            self._fail(call, Phase.NOT_SENT, "connect timeout")
        elif call.state == _HANDSHAKE:
            self._fail(call, Phase.NOT_SENT, "TLS handshake timeout, before the request left")
        else:
            self._fail(
                call, Phase.MAYBE_SENT,
                f"no answer within {self._timeouts.read:g} s (read timeout)",
            )

    # -- ends ----------------------------------------------------------------------------

    def _answered(self, call: _Call, answer: Answered, *, reusable: bool) -> None:
        self._unwatch(call)
        if reusable and call.sock is not None:
            self._pool.give(call.sock)
            call.sock = None
        else:
            self._drop(call)
        self._end(call, Answer(status=answer.status, body=answer.body, oversize=answer.oversize))

    def _fail(self, call: _Call, phase: Phase, reason: str) -> None:
        self._drop(call)
        self._end(call, TransportFailure(phase, reason))

    def _end(self, call: _Call, outcome: Answer | TransportFailure) -> None:
        result = self._conclude("send", call.masked_phone, call.started, outcome)
        now = time.monotonic()
        if isinstance(result, NotSent) and call.attempt < self._retries.attempts and (
            now - call.began < self._retries.within and now < call.deadline
        ):
            sleep = max(0.0, min(self._retries.backoff(call.attempt), call.deadline - now))
            self._retries.announce(call.attempt, sleep)
            call.attempt += 1
            call.state = _WAITING
            call.left = False
            call.timer = now + sleep
            return
        self._calls.remove(call)
        self._ended.append((call.key, result))

    # -- plumbing ------------------------------------------------------------------------

    def _watch(self, call: _Call, events: int) -> None:
        assert call.sock is not None
        if call.events == events:
            return
        if call.events:
            self._selector.modify(call.sock, events, call)
        else:
            self._selector.register(call.sock, events, call)
        call.events = events

    def _unwatch(self, call: _Call) -> None:
        if call.events and call.sock is not None:
            self._selector.unregister(call.sock)
        call.events = 0

    def _drop(self, call: _Call) -> None:
        self._unwatch(call)
        if call.sock is not None:
            call.sock.close()
            call.sock = None


def _sleep(seconds: float) -> list[Any]:
    time.sleep(seconds)
    return []
