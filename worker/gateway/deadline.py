"""A total deadline for one HTTP exchange, enforced by cutting its socket.

Socket timeouts bound each ``recv`` alone: a gateway that answers one byte a second, in
the headers or in the body, never trips one and would hold a worker thread for good. So
each exchange runs under :func:`watch`, and one watchdog thread per process shuts the
exchange's socket down (``shutdown(SHUT_RDWR)``) when its deadline passes; the blocked read
returns at once and the exchange ends in an error the caller reads as "deadline".

Which socket to cut is learnt from the connection itself: the session's pools
(:class:`DeadlineAdapter`) build connections that report to the calling thread's exchange
when they connect (a TLS one from its TCP connect on, so a stalled handshake is cut too)
and when a request starts. The same report tells whether the request
may have left: a deadline hit after that is an unknown outcome, before it a request never
sent. A connection given back to its pool belongs to no exchange, so a late alarm can
never cut a connection another call has taken since.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: guards every exchange's state and every connection's owner
_LOCK = threading.Lock()
_OWNER = "_fibosms_exchange"
_local = threading.local()


class Exchange:
    """One request and its answer under a deadline (a :func:`time.monotonic` instant)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._conn: HTTPConnection | None = None
        #: a duplicate of a socket still connecting (TLS handshake), which the alarm may cut
        self._connecting: socket.socket | None = None
        self._sending = False
        self._left = False
        self._claimed = False
        self._expired = False
        self._done = False

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it passed)."""
        return self.deadline - time.monotonic()

    @property
    def done(self) -> bool:
        return self._done

    @property
    def left(self) -> bool:
        """Whether the request may have reached the gateway (sending began on a connection)."""
        with _LOCK:
            return self._left

    @property
    def claimed(self) -> bool:
        """Whether a connection ever reported to this exchange."""
        with _LOCK:
            return self._claimed

    def claim(self, conn: HTTPConnection, *, sending: bool) -> None:
        """``conn`` works for this exchange now; ``sending``: a request starts on it."""
        with _LOCK:
            if self._done:
                return
            setattr(conn, _OWNER, self)
            self._conn = conn
            self._claimed = True
            self._sending = self._sending or sending
            if self._expired:
                _cut(conn)  # connected after the deadline: nothing may go out
            elif self._sending and conn.sock is not None:
                self._left = True

    def hold(self, sock: socket.socket) -> None:
        """``sock`` is connecting for this exchange (its TLS handshake may stall too)."""
        with _LOCK:
            if self._done:
                return
            self._claimed = True
            # a duplicate: the TLS layer detaches the original before the handshake starts
            self._connecting = sock.dup()
            if self._expired:
                _shut(self._connecting)

    def connected(self) -> None:
        """The connection held by :meth:`hold` is up (or failed): the connection claims now."""
        with _LOCK:
            self._drop_connecting()

    def fire(self) -> None:
        """The deadline passed: cut the socket the exchange is blocked on, if it has one."""
        with _LOCK:
            if self._done:
                return
            self._expired = True
            if self._connecting is not None:
                _shut(self._connecting)
            conn = self._conn
            if conn is not None and getattr(conn, _OWNER, None) is self:
                _cut(conn)

    def finish(self) -> bool:
        """End the exchange; whether the deadline cut it (its answer is then not to be trusted)."""
        with _LOCK:
            self._done = True
            self._conn = None
            self._drop_connecting()
            return self._expired

    def _drop_connecting(self) -> None:
        if self._connecting is not None:
            self._connecting.close()
            self._connecting = None


def release(conn: HTTPConnection) -> None:
    """``conn`` went back to its pool: no exchange's alarm may cut it any more."""
    with _LOCK:
        if getattr(conn, _OWNER, None) is not None:
            setattr(conn, _OWNER, None)


def _cut(conn: HTTPConnection) -> None:
    if conn.sock is not None:
        _shut(conn.sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # the plain socket's shutdown, even under TLS: SSLSocket.shutdown would also drop
        # the TLS object that the blocked thread is still reading through
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def watch(deadline: float) -> Iterator[Exchange]:
    """Run one exchange in this thread under ``deadline``; ``finish()`` it to learn if cut."""
    exchange = Exchange(deadline)
    previous = getattr(_local, "exchange", None)
    _local.exchange = exchange
    _watchdog().arm(exchange)
    try:
        yield exchange
    finally:
        exchange.finish()
        _local.exchange = previous


def _claim(conn: HTTPConnection, *, sending: bool) -> None:
    exchange = _current()
    if exchange is not None:
        exchange.claim(conn, sending=sending)


def _current() -> Exchange | None:
    exchange: Exchange | None = getattr(_local, "exchange", None)
    return exchange


# -- the retries of one call, within its deadline -------------------------------------


class StopAt(stop_base):
    """Stop once the call's deadline (a :func:`time.monotonic` instant) has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self.deadline


class WaitWithin(wait_base):
    """A backoff that never sleeps past the call's deadline."""

    def __init__(self, wait: wait_base, deadline: float) -> None:
        self.wait = wait
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> float:
        return max(0.0, min(self.wait(retry_state), self.deadline - time.monotonic()))


# -- connections and pools that report to the exchange -------------------------------------


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _claim(self, sending=False)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _claim(self, sending=True)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        exchange = _current()
        if exchange is not None:
            exchange.hold(sock)
        return sock

    def connect(self) -> None:
        try:
            super().connect()
        finally:
            exchange = _current()
            if exchange is not None:
                exchange.connected()
        _claim(self, sending=False)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _claim(self, sending=True)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            release(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            release(conn)
        super()._put_conn(conn)


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through an HTTP proxy) can be cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


# -- the watchdog ----------------------------------------------------------------------------


class _Watchdog:
    """One daemon thread firing exchanges at their deadlines; started on first use."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Exchange]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, exchange: Exchange) -> None:
        with self._cond:
            heapq.heappush(self._heap, (exchange.deadline, next(self._seq), exchange))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fibosms-gateway-deadline", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is exchange:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[Exchange] = []
            with self._cond:
                # finished exchanges stay in the heap until their time; drop them first
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._cond.wait(self._heap[0][0] - now)
                    continue
            for exchange in due:  # outside the condition: fire() takes the exchange lock
                exchange.fire()


_dog: _Watchdog | None = None
_dog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    global _dog
    with _dog_lock:
        if _dog is None:
            _dog = _Watchdog()
        return _dog


def _reset_after_fork() -> None:
    global _dog, _dog_lock, _LOCK
    # the parent's watchdog thread does not exist in the child, and any of these locks may
    # have been held at the fork
    _dog, _dog_lock, _LOCK = None, threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
