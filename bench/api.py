"""The HTTP API's throughput against the in-process producer, in one run.

    python -m bench.api                      # ~1 minute
    python -m bench.api --workers 2 --connections 32 --seconds 15 --json

Through real PostgreSQL and Redis on 127.0.0.1 (a database of its own, dropped and made
again; a Redis database number claimed like the test suite claims one), no worker running:
what is measured is accepting a message (validate, insert, commit, publish the id).

1. ``enqueue_sms`` called in this process, one caller, for ``--seconds``: messages/s.
2. ``fibosms serve --workers N`` as a subprocess; ``POST /v1/messages`` flat out from
   ``--connections`` keep-alive connections (a raw asyncio client in ``--clients``
   processes): the sustained rate, and p50/p99 latency. 1 and 2 take turns ``--rounds``
   times and the medians are compared, so the load of a shared machine weighs on both.
3. The same at half that rate, open loop (requests sent on a fixed schedule, latency from
   the scheduled time, so a stall is not hidden): p50/p99.
4. ``POST /v1/messages/batch`` with ``--batch-size`` messages, ``--batches`` times: msg/s.

Loopback only. Nothing here is imported by the product or the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import redis
from sqlalchemy import create_engine, text

from bench.common import BenchError, free_port, percentile

REDIS_OWNER_KEY = "fibosms-test:owner"
BODY = json.dumps({"phone": "0912345678", "text": "Ma OTP cua ban la 123456"}).encode()


def _claim_redis_db(owner: str) -> int:
    for number in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        try:
            if client.set(REDIS_OWNER_KEY, owner, nx=True, ex=3600):
                return number
        finally:
            client.close()
    raise BenchError("every Redis database 1-15 is taken; try again later")


def _fresh_database(admin_url: str, name: str) -> str:
    from worker.ledger.migrate import upgrade

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BenchError(f"--database must be a plain lower-case name, got {name!r}")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


# -- the load generator: raw HTTP/1.1 over asyncio, keep-alive, one request in flight each --


def _request(path: str, body: bytes, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _flat_out(port: int, request: bytes, connections: int, seconds: float
                    ) -> tuple[int, int, list[float]]:
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    bad = 0

    async def loop() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status = await _one(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            bad += status != 201
        writer.close()

    await asyncio.gather(*(loop() for _ in range(connections)))
    return len(latencies), bad, latencies


async def _paced(port: int, request: bytes, connections: int, seconds: float, rate: float
                 ) -> tuple[int, int, list[float]]:
    """Open loop: request i is due at start + i / rate; latency counts from when it was due."""
    start = time.perf_counter() + 0.2
    total = int(seconds * rate)
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []
    bad = 0

    async def schedule() -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(due)

    async def loop() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while len(latencies) < total:
            try:
                due = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                continue
            status = await _one(reader, writer, request)
            latencies.append(time.perf_counter() - due)
            bad += status != 201
        writer.close()

    await asyncio.gather(schedule(), *(loop() for _ in range(connections)))
    return len(latencies), bad, latencies


def _child(args: tuple[str, int, bytes, int, float, float | None]) -> tuple[int, int, list[float]]:
    mode, port, request, connections, seconds, rate = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if mode == "flat":
        return asyncio.run(_flat_out(port, request, connections, seconds))
    assert rate is not None
    return asyncio.run(_paced(port, request, connections, seconds, rate))


def _load(mode: str, port: int, request: bytes, *, clients: int, connections: int,
          seconds: float, rate: float | None = None) -> dict[str, Any]:
    per = max(1, connections // clients)
    share = rate / clients if rate is not None else None
    with mp.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_child, [(mode, port, request, per, seconds, share)] * clients)
    done = sum(p[0] for p in parts)
    bad = sum(p[1] for p in parts)
    latencies = [x for p in parts for x in p[2]]
    return {
        "requests": done, "not_201": bad, "rate": round(done / seconds, 1),
        "p50_ms": round((percentile(latencies, 50) or 0) * 1000, 2),
        "p99_ms": round((percentile(latencies, 99) or 0) * 1000, 2),
    }


# -- the parts ---------------------------------------------------------------------------


def in_process_rate(env: dict[str, str], seconds: float) -> dict[str, Any]:
    from producer.enqueue import Producer
    from worker.ledger.db import Database
    from worker.publish import broker_publisher
    from worker.settings import Settings

    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    # built as producer.enqueue_sms builds its own
    producer = Producer(settings=settings, db=db, publisher=broker_publisher(settings))
    producer.enqueue_sms("0912345678", "warm up")
    latencies = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        producer.enqueue_sms("0912345678", "Ma OTP cua ban la 123456")
        latencies.append(time.perf_counter() - started)
    db.dispose()
    return {
        "messages": len(latencies), "rate": round(len(latencies) / seconds, 1),
        "p50_ms": round((percentile(latencies, 50) or 0) * 1000, 2),
        "p99_ms": round((percentile(latencies, 99) or 0) * 1000, 2),
    }


def batch_rate(port: int, token: str, size: int, batches: int) -> dict[str, Any]:
    import httpx

    body = {"messages": [{"phone": f"09123{i % 100000:05d}", "text": f"Khuyen mai {i}"}
                         for i in range(size)]}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        client.post("/v1/messages/batch", json={"messages": body["messages"][:10]},
                    headers=headers).raise_for_status()
        started = time.perf_counter()
        for _ in range(batches):
            r = client.post("/v1/messages/batch", json=body, headers=headers)
            if r.status_code != 201:
                raise BenchError(f"batch answered {r.status_code}: {r.text[:200]}")
        elapsed = time.perf_counter() - started
    return {"messages": size * batches, "seconds": round(elapsed, 2),
            "rate": round(size * batches / elapsed, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database", default="fibosms_bench_api")
    p.add_argument("--workers", type=int, default=2, help="API server processes")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--clients", type=int, default=1, help="load generator processes")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3,
                   help="in-process and API measured in turns; the medians are compared")
    p.add_argument("--json", action="store_true")
    o = p.parse_args(argv)

    owner = f"fibosms-bench-api:{platform.node()}:{os.getpid()}"
    number = _claim_redis_db(owner)
    broker = f"redis://127.0.0.1:6379/{number}"
    tmp = tempfile.mkdtemp(prefix="fibosms-bench-api-")
    server: subprocess.Popen[bytes] | None = None
    try:
        db_url = _fresh_database(o.pg_admin_url, o.database)
        env = {
            "FIBOSMS_DATABASE_URL": db_url, "FIBOSMS_BROKER_URL": broker,
            "FIBOSMS_DATA_DIR": tmp, "FIBOSMS_ENV_FILE": os.path.join(tmp, "none.env"),
            "FIBOSMS_LOG_LEVEL": "WARNING",
        }
        results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                               "load_1m": os.getloadavg()[0],
                                               "python": platform.python_version()}}

        from worker.clock import now
        from worker.ledger.apikeys import create_key
        from worker.ledger.db import Database

        db = Database(db_url)
        with db.transaction() as session:
            _key, token = create_key(session, "bench", frozenset({"send"}), now=now())
        db.dispose()
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "fibosms.cli", "serve", "--port", str(port),
             "--workers", str(o.workers)],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("FIBOSMS_")}, **env},
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "serve.log"), "wb"),  # noqa: SIM115
        )
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health/live", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise BenchError(f"the API did not start; see {tmp}/serve.log")
            time.sleep(0.2)
        request = _request("/v1/messages", BODY, token)
        _load("flat", port, request, clients=o.clients, connections=o.connections, seconds=2)
        # in turns, so that what else this (shared) machine does weighs on both alike
        turns_in, turns_api = [], []
        for _ in range(o.rounds):
            turns_in.append(in_process_rate(env, o.seconds))
            turns_api.append(_load("flat", port, request, clients=o.clients,
                                   connections=o.connections, seconds=o.seconds))
        results["in_process_rounds"] = [t["rate"] for t in turns_in]
        results["api_rounds"] = [t["rate"] for t in turns_api]
        results["in_process"] = sorted(turns_in, key=lambda t: t["rate"])[o.rounds // 2]
        flat = sorted(turns_api, key=lambda t: t["rate"])[o.rounds // 2]
        results["api_sustained"] = flat
        results["api_half_rate"] = _load(
            "paced", port, request, clients=o.clients, connections=o.connections,
            seconds=o.seconds, rate=flat["rate"] / 2,
        )
        results["api_batch"] = batch_rate(port, token, o.batch_size, o.batches)
        results["ratio_api_to_in_process"] = round(
            flat["rate"] / results["in_process"]["rate"], 2
        )
        results["load_1m_after"] = os.getloadavg()[0]
        results["settings"] = {"workers": o.workers, "connections": o.connections,
                               "clients": o.clients, "seconds": o.seconds}
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        client.flushdb()
        client.close()
    if o.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.items():
            print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
