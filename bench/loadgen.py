"""A small HTTP/1.1 load generator: many keep-alive connections, GET one path, count answers.

Used to measure the fast gateway double's own rate (the ceiling it puts on the benchmark).
Raw ``asyncio.Protocol`` (uvloop when installed), optional pipelining, several processes.
Loopback targets only; bounded by ``--seconds``.

    python -m bench.loadgen --port 8099 --connections 64 --seconds 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

DEFAULT_PATH = (
    "/SendMT/service.asmx/SendMaskedSMS?clientNo=BENCH0001&clientPass=bench-pass"
    "&senderName=FIBOBENCH&phoneNumber=0912345678&smsMessage=Ma%20OTP%20cua%20ban%20la%20123456"
    "&smsGUID=0&serviceType=0"
)


class Stats:
    def __init__(self) -> None:
        self.ok = 0
        self.bad = 0
        self.errors = 0


class Client(asyncio.Protocol):
    def __init__(self, request: bytes, depth: int, stop_at: float, stats: Stats,
                 done: asyncio.Future[None]) -> None:
        self.request = request
        self.depth = depth
        self.stop_at = stop_at
        self.stats = stats
        self.done = done
        self.buf = bytearray()
        self.outstanding = 0
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request * self.depth)
        self.outstanding = self.depth

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        more = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            if i < 0:
                self.stats.errors += 1
                self._finish()
                return
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j >= 0 else len(head)].strip())
            total = end + 4 + length
            if len(buf) < total:
                break
            if head.startswith(b"http/1.1 200"):
                self.stats.ok += 1
            else:
                self.stats.bad += 1
            del buf[:total]
            self.outstanding -= 1
            more += 1
        if more and self.loop.time() < self.stop_at:
            assert self.transport is not None
            self.transport.write(self.request * more)
            self.outstanding += more
        elif self.outstanding == 0:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outstanding:
            self.stats.errors += 1
        if not self.done.done():
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


async def _run(host: str, port: int, path: str, connections: int, depth: int,
               seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: fibosms-bench\r\n"
               "Accept: */*\r\n\r\n").encode()
    stats = Stats()
    started = loop.time()
    stop_at = started + seconds
    futures = []
    def factory(done: asyncio.Future[None]) -> Callable[[], Client]:
        return lambda: Client(request, depth, stop_at, stats, done)

    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(factory(done), host, port)
        futures.append(done)
    await asyncio.wait_for(asyncio.gather(*futures), timeout=seconds + 30)
    elapsed = loop.time() - started
    return {"ok": stats.ok, "bad": stats.bad, "errors": stats.errors, "seconds": elapsed}


def _child(host: str, port: int, path: str, connections: int, depth: int, seconds: float,
           out: Any) -> None:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        out.put(loop.run_until_complete(_run(host, port, path, connections, depth, seconds)))
    except Exception as exc:
        out.put({"ok": 0, "bad": 0, "errors": 1, "seconds": seconds, "error": repr(exc)})
    finally:
        loop.close()


def measure(host: str, port: int, *, path: str = DEFAULT_PATH, connections: int = 64,
            depth: int = 1, seconds: float = 5.0, processes: int = 1) -> dict[str, Any]:
    """Run the load and return ``{"rate", "ok", "bad", "errors", …}``."""
    if not (host == "localhost" or ipaddress.ip_address(host).is_loopback):
        raise ValueError(f"loopback targets only, got {host!r}")
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = max(1, connections // processes)
    procs = [ctx.Process(target=_child, args=(host, port, path, per, depth, seconds, out))
             for _ in range(processes)]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    wall = time.monotonic() - started
    ok = sum(r["ok"] for r in results)
    longest = max(r["seconds"] for r in results)
    return {
        "tool": "bench.loadgen",
        "connections": per * processes,
        "pipeline_depth": depth,
        "processes": processes,
        "ok": ok,
        "bad": sum(r["bad"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "seconds": longest,
        "wall_seconds": wall,
        "rate": ok / longest if longest > 0 else 0.0,
        "failures": [r["error"] for r in results if "error" in r],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default=DEFAULT_PATH)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = measure(args.host, args.port, path=args.path, connections=args.connections,
                     depth=args.depth, seconds=args.seconds, processes=args.processes)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['rate']:.0f} req/s ({result['ok']} ok, {result['bad']} bad, "
              f"{result['errors']} errors, {result['connections']} connections, depth "
              f"{result['pipeline_depth']}, {result['processes']} process(es), "
              f"{result['seconds']:.1f} s)")
    return 0 if result["errors"] == 0 and result["bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
