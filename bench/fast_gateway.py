"""A fast FIBO gateway double for the benchmark: answers success, counts what arrives.

Speaks just enough of FIBO's wire format for the pipeline's client: ``SendMaskedSMS`` and
``GetClientBalance`` (GET, the exact escaped ASMX ``<string>`` documents) and the SOAP
``GetTotalMt`` (POST). It checks no credentials and keeps no balance; it answers every send
with the configured code (200 by default), after an optional fixed latency that delays the
answer without blocking anything else (``call_at`` on the event loop).

Built for speed, so that a benchmark measures the pipeline and not the double: raw
``asyncio.Protocol`` (on uvloop when installed), HTTP/1.1 keep-alive and pipelining, several
processes accepting on one port with ``SO_REUSEPORT``.

Counting: every process counts its own arrivals in shared memory (``fork``-inherited
``RawArray``\\s), so any process can answer the control paths for all of them:

``GET /_count[?since=UNIX&until=UNIX]``
    JSON: totals per operation, first and last send arrival, the current latency and code;
    with ``since``: the send arrivals in that range as 10 ms buckets (``buckets.counts``), per
    second (``per_second``), and the largest number in any sliding 100 ms and 1 s window.
``GET /_reset``
    zero every counter (call it while no traffic is flowing).
``GET /_config?latency_ms=N&code=C``
    change the latency or the answered result code at run time; answers the config.

Only loopback addresses are accepted for ``--host``. The parent prints one JSON line
(``{"port", "pid", "processes", "uvloop"}``) once every process listens, and stops its
children on SIGTERM / SIGINT, when its own parent goes away (``--exit-with-parent``), or after
``--max-seconds``.

    python -m bench.fast_gateway --port 8099 --processes 2 --latency-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ipaddress
import json
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from bench.common import sliding_max

#: width of one arrival bucket, seconds
BUCKET_SECONDS = 0.01
C_SEND, C_BALANCE, C_TOTALS, C_CONTROL, C_OTHER, C_CONNECTIONS = range(6)
COUNTER_NAMES = ("send", "balance", "totals", "control", "other", "connections")
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 20
#: the most buckets one /_count answer returns (10 minutes)
MAX_RANGE_BUCKETS = 60_000

XML_DECL = '<?xml version="1.0" encoding="utf-8"?>\n'
TEMPURI = "http://tempuri.org/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def asmx_string(inner: str) -> bytes:
    """ASMX's GET answer: the inner XML escaped inside ``<string xmlns=tempuri>``."""
    return f'{XML_DECL}<string xmlns="{TEMPURI}">{escape(inner)}</string>'.encode()


def sms_body(code: int) -> bytes:
    """SendMaskedSMS's answer for ``code`` (200 and 1: "Sending...", as FIBO says)."""
    message = "Sending..." if code in (200, 1) else f"bench double: code {code}"
    return asmx_string(f"<SMS><Code>{code}</Code><Message>{message}</Message><Time></Time></SMS>")


def balance_body(balance: int) -> bytes:
    return asmx_string(
        f"<SMS><Code>200</Code><AccountBalance>{balance}</AccountBalance><Time></Time></SMS>"
    )


def totals_body(success: int) -> bytes:
    return (
        f'{XML_DECL}<soap:Envelope xmlns:soap="{SOAP_ENV}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>'
        f'<GetTotalMtResponse xmlns="{TEMPURI}"><GetTotalMtResult>{success}|0|0'
        "</GetTotalMtResult></GetTotalMtResponse></soap:Body></soap:Envelope>"
    ).encode()


def http_response(
    body: bytes, *, status: str = "200 OK", content_type: bytes = b"text/xml; charset=utf-8"
) -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nCache-Control: private, max-age=0\r\n\r\n" + body
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Shared:
    """Counters in shared memory: each process writes only its own slots."""

    def __init__(self, processes: int, max_seconds: float, latency_ms: float, code: int,
                 balance: int) -> None:
        self.processes = processes
        self.nbuckets = int(max_seconds / BUCKET_SECONDS) + 1
        self.counters: Any = mp.RawArray(ctypes.c_int64, processes * len(COUNTER_NAMES))
        #: per process: first and last send arrival (unix time; 0 = none yet)
        self.first_last: Any = mp.RawArray(ctypes.c_double, processes * 2)
        self.buckets: Any = mp.RawArray(ctypes.c_int32, processes * self.nbuckets)
        #: latency (seconds), code, balance, reset generation
        self.config: Any = mp.RawArray(ctypes.c_double, 4)
        self.config[0] = latency_ms / 1000.0
        self.config[1] = float(code)
        self.config[2] = float(balance)
        self.epoch = time.time()

    # -- reading (any process) -------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        n = len(COUNTER_NAMES)
        return {
            name: sum(self.counters[p * n + i] for p in range(self.processes))
            for i, name in enumerate(COUNTER_NAMES)
        }

    def first_last_send(self) -> tuple[float | None, float | None]:
        firsts = [self.first_last[p * 2] for p in range(self.processes)]
        lasts = [self.first_last[p * 2 + 1] for p in range(self.processes)]
        seen = [f for f in firsts if f > 0]
        return (min(seen) if seen else None, max(lasts) if seen else None)

    def bucket_range(self, since: float, until: float) -> tuple[float, list[int]]:
        """Send arrivals in [since, until) as 10 ms buckets; (start time, counts)."""
        a = max(0, int((since - self.epoch) / BUCKET_SECONDS))
        b = min(self.nbuckets, int((until - self.epoch) / BUCKET_SECONDS) + 1)
        b = min(b, a + MAX_RANGE_BUCKETS)
        if b <= a:
            return self.epoch + a * BUCKET_SECONDS, []
        counts = [0] * (b - a)
        for p in range(self.processes):
            base = p * self.nbuckets
            for i, v in enumerate(self.buckets[base + a : base + b]):
                if v:
                    counts[i] += v
        return self.epoch + a * BUCKET_SECONDS, counts

    def reset(self) -> None:
        for i in range(len(self.counters)):
            self.counters[i] = 0
        for i in range(len(self.first_last)):
            self.first_last[i] = 0.0
        ctypes.memset(ctypes.addressof(self.buckets), 0, ctypes.sizeof(self.buckets))


class Handler:
    """One process's request handling and counting."""

    def __init__(self, shared: Shared, index: int, loop: asyncio.AbstractEventLoop) -> None:
        self.shared = shared
        self.index = index
        self.loop = loop
        self.cbase = index * len(COUNTER_NAMES)
        self.bbase = index * shared.nbuckets
        self._sms_cache: dict[int, bytes] = {}

    def count(self, counter: int) -> None:
        self.shared.counters[self.cbase + counter] += 1

    def send_arrived(self) -> None:
        now = time.time()
        shared = self.shared
        shared.counters[self.cbase + C_SEND] += 1
        fl = self.index * 2
        if shared.first_last[fl] == 0.0:
            shared.first_last[fl] = now
        shared.first_last[fl + 1] = now
        b = int((now - shared.epoch) / BUCKET_SECONDS)
        if 0 <= b < shared.nbuckets:
            shared.buckets[self.bbase + b] += 1

    def sms_response(self) -> bytes:
        code = int(self.shared.config[1])
        cached = self._sms_cache.get(code)
        if cached is None:
            cached = self._sms_cache[code] = http_response(sms_body(code))
        return cached

    def handle(self, head: bytes, body: bytes) -> tuple[bytes, float]:
        """(response bytes, delay in seconds) for one request."""
        line_end = head.find(b"\r\n")
        parts = (head if line_end < 0 else head[:line_end]).split(b" ")
        if len(parts) != 3:
            return http_response(b"bad request", status="400 Bad Request",
                                 content_type=b"text/plain"), 0.0
        target = parts[1]
        q = target.find(b"?")
        path = target if q < 0 else target[:q]
        if path.endswith(b"/SendMaskedSMS"):
            self.send_arrived()
            return self.sms_response(), self.shared.config[0]
        if path.endswith(b"/GetClientBalance"):
            self.count(C_BALANCE)
            return http_response(balance_body(int(self.shared.config[2]))), self.shared.config[0]
        if path.endswith(b"/PartnerMtTotal.asmx"):
            self.count(C_TOTALS)
            return http_response(totals_body(self.shared.totals()["send"])), self.shared.config[0]
        if path.startswith(b"/_"):
            self.count(C_CONTROL)
            query = target[q + 1 :].decode("latin-1") if q >= 0 else ""
            return self.control(path, parse_qs(query)), 0.0
        self.count(C_OTHER)
        return http_response(b"not found", status="404 Not Found", content_type=b"text/plain"), 0.0

    def control(self, path: bytes, query: dict[str, list[str]]) -> bytes:
        shared = self.shared

        def num(name: str) -> float | None:
            values = query.get(name)
            return float(values[0]) if values else None

        try:
            if path == b"/_reset":
                shared.reset()
                out: dict[str, Any] = {"reset": True}
            elif path == b"/_config":
                latency = num("latency_ms")
                code = num("code")
                if latency is not None:
                    shared.config[0] = max(0.0, latency) / 1000.0
                if code is not None:
                    shared.config[1] = float(int(code))
                out = {"latency_ms": shared.config[0] * 1000.0, "code": int(shared.config[1])}
            elif path == b"/_count":
                out = self.counts(num("since"), num("until"))
            else:
                return http_response(b"{}", status="404 Not Found",
                                     content_type=b"application/json")
        except ValueError as exc:
            return http_response(json.dumps({"error": str(exc)}).encode(),
                                 status="400 Bad Request", content_type=b"application/json")
        return http_response(json.dumps(out).encode(), content_type=b"application/json")

    def counts(self, since: float | None, until: float | None) -> dict[str, Any]:
        shared = self.shared
        first, last = shared.first_last_send()
        out: dict[str, Any] = {
            "now": time.time(),
            "epoch": shared.epoch,
            "processes": shared.processes,
            "latency_ms": shared.config[0] * 1000.0,
            "code": int(shared.config[1]),
            **shared.totals(),
            "first_send": first,
            "last_send": last,
        }
        if since is not None:
            end = until if until is not None else time.time()
            start, counts = shared.bucket_range(since, end)
            per = round(1.0 / BUCKET_SECONDS)
            out["buckets"] = {"start": start, "seconds": BUCKET_SECONDS, "counts": counts}
            out["per_second"] = [sum(counts[i : i + per]) for i in range(0, len(counts), per)]
            out["max_100ms"] = sliding_max(counts, round(0.1 / BUCKET_SECONDS))
            out["max_1s"] = sliding_max(counts, per)
        return out


class Connection(asyncio.Protocol):
    """One keep-alive connection; pipelined requests are answered in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.loop = handler.loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        #: loop time of the last answer scheduled (answers keep their order)
        self.last_due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.handler.count(C_CONNECTIONS)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self._close()
                return
            head = bytes(buf[:end])
            lower = head.lower()
            length = 0
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                try:
                    length = int(lower[i + 17 : j if j >= 0 else len(lower)].strip() or b"0")
                except ValueError:
                    self._close()
                    return
                if length < 0 or length > MAX_BODY_BYTES:
                    self._close()
                    return
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            close = b"\r\nconnection: close" in lower or (
                lower.split(b"\r\n", 1)[0].endswith(b"http/1.0")
                and b"\r\nconnection: keep-alive" not in lower
            )
            response, delay = self.handler.handle(head, body)
            self._answer(response, delay, close)
            if close:
                buf.clear()
                return

    def _answer(self, data: bytes, delay: float, close: bool) -> None:
        now = self.loop.time()
        if delay > 0 or self.last_due > now:
            due = max(now + delay, self.last_due)
            self.last_due = due
            self.loop.call_at(due, self._write, data, close)
        else:
            self._write(data, close)

    def _write(self, data: bytes, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if close:
            t.close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _serve(shared: Shared, index: int, host: str, port: int, ready: Any, use_uvloop: bool,
           parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if use_uvloop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    handler = Handler(shared, index, loop)
    server = loop.run_until_complete(loop.create_server(lambda: Connection(handler), sock=sock))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)

    def watch_parent() -> None:
        if os.getppid() != parent:
            loop.stop()
            return
        loop.call_later(0.5, watch_parent)

    loop.call_later(0.5, watch_parent)
    ready.set()
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.fast_gateway",
        description="A fast FIBO gateway double that answers success and counts arrivals.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port (printed)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before each answer")
    p.add_argument("--code", type=int, default=200, help="result code answered to every send")
    p.add_argument("--balance", type=int, default=1_000_000_000)
    p.add_argument("--max-seconds", type=float, default=7200.0,
                   help="stop by itself after this long (also the histogram's span)")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio even if uvloop is here")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this one goes away")
    args = p.parse_args(argv)

    if not is_loopback(args.host):
        p.error(f"--host must be a loopback address, got {args.host!r}")
    if args.processes < 1:
        p.error("--processes must be at least 1")

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((args.host, args.port))  # bound, never listening: holds the port for the children
    port = holder.getsockname()[1]

    use_uvloop = not args.no_uvloop and uvloop_available()
    shared = Shared(args.processes, args.max_seconds, args.latency_ms, args.code, args.balance)
    ctx = mp.get_context("fork")
    readies = [ctx.Event() for _ in range(args.processes)]
    me = os.getpid()
    children = [
        ctx.Process(target=_serve, args=(shared, i, args.host, port, readies[i], use_uvloop, me),
                    name=f"fast-gateway-{i}", daemon=True)
        for i in range(args.processes)
    ]
    for child in children:
        child.start()

    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        for ev, child in zip(readies, children, strict=True):
            if not ev.wait(10.0):
                print(f"fast_gateway: process {child.name} did not start", file=sys.stderr)
                return 1
        print(json.dumps({"port": port, "pid": me, "processes": args.processes,
                          "uvloop": use_uvloop, "latency_ms": args.latency_ms}), flush=True)
        parent = os.getppid()
        started = time.monotonic()
        while not stopping:
            time.sleep(0.2)
            if any(not c.is_alive() for c in children):
                print("fast_gateway: a server process died", file=sys.stderr)
                code = 1
                break
            if args.exit_with_parent and os.getppid() != parent:
                break
            if time.monotonic() - started > args.max_seconds:
                print("fast_gateway: --max-seconds reached, stopping", file=sys.stderr)
                break
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
        holder.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
