"""fibosms throughput benchmark (issue 7): a script, not a test.

Measures the pipeline as it is in this working tree, through real Redis and PostgreSQL on
127.0.0.1, against the fast gateway double (``bench/fast_gateway.py``), and in the same run
the ceilings it is compared with: a no-op Celery task through the same broker, configuration,
pool and concurrency (``bench/noop_app.py``), and the double's own raw rate.

Parts (``--only``, comma-separated; default ``ceilings,enqueue,single,bulk,latency``):

* ``ceilings`` — the gateway double's raw rate (bench.loadgen, and wrk when installed); the
  no-op task's drain rate (and, informative, the same with task events off);
* ``enqueue`` — ``enqueue_sms`` one by one and ``enqueue_many`` into PostgreSQL + Redis, no
  worker running;
* ``single`` — otp/transactional messages (enqueue_sms): drain rate of a pre-filled queue by one
  worker; then end to end with the worker running, flat out and paced (latency p50/p99);
* ``bulk`` — marketing messages (enqueue_many): drain rate of a pre-filled queue;
* ``latency`` — single and bulk drains with the gateway answering after 100 ms;
* ``ratelimit`` — FIBOSMS_RATE_LIMIT=50 and 4 worker processes for 60 s: the rate the gateway
  saw per second and the largest bursts;
* ``priority`` — 20,000 bulk messages queued, OTPs enqueued one every 100 ms for 20 s, workers
  as the README recommends (one on ``-Q urgent``, one on ``-Q default,bulk``): OTP latency;
* ``floor`` — ``enqueue_sms`` one by one against a bare loop of the same durable work (one
  INSERT into sms_messages, one COMMIT, one LPUSH of the same task message to the same queue,
  written with psycopg and redis-py), in alternating turns (issue 15, target 4);
* ``cli`` — wall time of ``fibosms --help`` and ``fibosms send`` as processes, 20 runs each, on
  the bench's PostgreSQL + Redis and on the SQLite default (issue 15, target 5).

``all`` runs every part. Every process it uses (workers, gateway double, load generator) is
started and stopped here; the database is dropped and created afresh; Redis gets a database
number of its own (claimed with the test suite's ``fibosms-test:owner`` key, so a test run
never flushes it mid-measurement) and is emptied. Every wait is bounded. Nothing is sent
anywhere but 127.0.0.1.

    .venv/bin/python -m bench.run                      # the default parts, 10,000 messages
    .venv/bin/python -m bench.run --only ratelimit,priority
    .venv/bin/python -m bench.run --concurrency 8,16,32 --only ceilings,single
    .venv/bin/python -m bench.run --json > results.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.common import (  # noqa: E402
    BenchError,
    is_loopback_host,
    percentile,
    require_loopback_url,
    wait_for,
)
from bench.procstats import CpuGroup, Phase, TreeWatch, by_name, postgres_backends, tree  # noqa: E402

PARTS = ("ceilings", "enqueue", "single", "bulk", "latency", "ratelimit", "priority", "floor",
         "cli")
DEFAULT_PARTS = ("ceilings", "enqueue", "single", "bulk", "latency")
QUEUES = ("urgent", "default", "bulk")
#: the key by which test runs claim a Redis database number (tests/fixtures/services.py)
REDIS_OWNER_KEY = "fibosms-test:owner"
REDIS_OWNER_TTL = 3600
FINAL = ("sent", "dead", "expired")
#: variables whose URL must stay on 127.0.0.1
URL_VARS = ("FIBOSMS_DATABASE_URL", "FIBOSMS_BROKER_URL", "FIBOSMS_API_URL",
            "FIBOSMS_ALERT_WEBHOOK_URL")
OTP_TEXT = "Ma OTP cua ban la 123456"
BULK_TEXT = "Giam 50% hom nay tai cua hang FIBO, tu choi soan TC gui 9029"

# the targets of issue 7
TARGET_SINGLE_FRACTION = 0.6
TARGET_BULK_FRACTION = 1.0
TARGET_LATENCY_RATE = 200.0
TARGET_ENQUEUE_MANY_RATE = 5000.0
TARGET_OTP_P99 = 1.0
# the targets of issue 15
TARGET_FLOOR_FRACTION = 0.8
TARGET_HELP_SECONDS = 0.15
TARGET_SEND_SECONDS = 0.3
#: the libraries `fibosms send` imports for a plain message on PostgreSQL + Redis
#: (producer.oneshot), imported and nothing else: the floor of its start-up
FLOOR_IMPORTS = "import click, psycopg, pydantic, phonenumbers"
#: the same with SQLAlchemy and redis-py: what the full producer's path imports
FLOOR_IMPORTS_FULL = "import click, sqlalchemy, psycopg, redis, pydantic, phonenumbers"


def phone(i: int) -> str:
    """A valid Vinaphone number, distinct for each i below a million."""
    return f"0912{i % 1_000_000:06d}"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    name: str
    value: float | None
    unit: str
    fraction: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit in ("s", "ms"):
        return f"{v:,.3f}" if unit == "s" else f"{v:,.1f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def render_table(rows: list[Row], meta: dict[str, Any]) -> str:
    head = ("section", "measurement", "value", "unit", "× no-op", "target", "ok", "note")
    body = [
        (
            r.section,
            r.name,
            fmt_value(r.value, r.unit),
            r.unit,
            "" if r.fraction is None else f"{r.fraction:.2f}",
            r.target,
            "" if r.ok is None else ("PASS" if r.ok else "FAIL"),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    right = {2, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    la0, la1 = meta["loadavg_start"], meta["loadavg_end"]
    out = [
        f"fibosms bench — {meta['started']}  git {meta['git']}  pool {meta['pool']}  "
        f"python {meta['python']}  celery {meta['celery']}",
        f"load average at start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}, at end "
        f"{la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f}  ({meta['cpus']} cores; other sessions' load "
        "makes these numbers noisy)",
        "",
        line(head),
        line(["-" * w for w in widths]),
        *(line(b) for b in body),
    ]
    return "\n".join(out)


# -- the gateway double ------------------------------------------------------------------------


class Gateway:
    """The fast gateway double as a subprocess, and its control paths."""

    def __init__(self, out_dir: Path, processes: int) -> None:
        self.log_path = out_dir / "gateway.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "bench.fast_gateway", "--host", "127.0.0.1", "--port", "0",
             "--processes", str(processes), "--exit-with-parent", "--max-seconds", "7200"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20.0)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise BenchError(f"the gateway double did not start; see {self.log_path}")
        info = json.loads(line)
        self.port: int = info["port"]
        self.info = info
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 15.0) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise BenchError(f"gateway double {path}: HTTP {resp.status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def count(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        query = []
        if since is not None:
            query.append(f"since={since:.3f}")
        if until is not None:
            query.append(f"until={until:.3f}")
        return self.get("/_count" + ("?" + "&".join(query) if query else ""))

    def reset(self) -> None:
        self.get("/_reset")

    def configure(self, *, latency_ms: float | None = None, code: int | None = None) -> None:
        query = []
        if latency_ms is not None:
            query.append(f"latency_ms={latency_ms:g}")
        if code is not None:
            query.append(f"code={code}")
        self.get("/_config?" + "&".join(query))

    def pids(self) -> list[int]:
        return [p.pid for p in tree(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Options:
    parts: tuple[str, ...]
    messages: int
    latency_messages: int
    enqueue_messages: int
    e2e_messages: int
    latency_ms: float
    concurrency: list[int]
    pool: str
    extra_env: dict[str, str]
    redis_db: int | None
    pg_admin_url: str
    database: str
    gateway_processes: int
    loadgen_seconds: float
    paced_seconds: float
    paced_rate: float | None
    noop_events_off: bool
    e2e: bool
    rate_limit: float
    ratelimit_seconds: float
    ratelimit_workers: int
    priority_bulk: int
    priority_seconds: float
    priority_concurrency: int
    priority_layout: str
    profile: tuple[str, ...]
    profile_gil: bool
    floor_turns: int
    floor_messages: int
    cli_runs: int
    stall_seconds: float
    part_timeout: float
    log_level: str
    out_dir: Path
    as_json: bool


@dataclass
class Harness:
    opts: Options
    rows: list[Row] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    ceilings: dict[int, float] = field(default_factory=dict)
    #: the no-op task's rate with task events off (``--noop-events-off``)
    ceilings_events_off: dict[int, float] = field(default_factory=dict)

    # -- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        o = self.opts
        o.out_dir.mkdir(parents=True, exist_ok=True)
        require_loopback_url("--pg-admin-url", o.pg_admin_url)
        self.db_url = _with_database(o.pg_admin_url, o.database)
        self._fresh_database()
        self.redis_db = self._claim_redis_db()
        self.broker_url = f"redis://127.0.0.1:6379/{self.redis_db}"
        self.redis = redis.Redis.from_url(self.broker_url, socket_timeout=10)
        self.flush_broker()
        log(f"fresh database {o.database}, Redis db {self.redis_db}, logs in {o.out_dir}")

        self.gateway = Gateway(o.out_dir, o.gateway_processes)
        log(f"gateway double on {self.gateway.url} ({self.gateway.info['processes']} processes, "
            f"uvloop {self.gateway.info['uvloop']})")

        self.env = self._env()
        from producer.enqueue import Producer
        from worker.ledger.db import Database
        from worker.publish import broker_publisher
        from worker.settings import Settings

        fibosms_env = {k: v for k, v in self.env.items() if k.startswith("FIBOSMS_")}
        self.settings = Settings.from_env(fibosms_env)
        self.db = Database(self.settings.database_url)
        # what producer.enqueue_sms uses: the task messages written through kombu
        self.producer = Producer(settings=self.settings, db=self.db,
                                 publisher=broker_publisher(self.settings))

        self.watch = TreeWatch(
            lambda: [w.popen.pid for w in self.workers if w.popen.poll() is None]
        )
        self.watch.start()
        self.groups = [
            self.watch.cpu,
            CpuGroup("postgres (bench db backends)", lambda: postgres_backends(o.database)),
            CpuGroup("redis-server", by_name("redis-server")),
            CpuGroup("gateway double", lambda: [p for pid in self.gateway.pids()
                                                for p in tree(pid)[:1]]),
            CpuGroup("bench (producer, sampling)", lambda: tree(os.getpid())[:1]),
        ]

    def _claim_redis_db(self) -> int:
        """A Redis database number nobody else uses, claimed the way the test suite claims
        one (``fibosms-test:owner``, SET NX), so a test run on this machine never takes it
        (and flushes it) while the bench runs."""
        self.owner = f"fibosms-bench:{platform.node()}:{os.getpid()}"
        wanted = [self.opts.redis_db] if self.opts.redis_db is not None else range(15, 0, -1)
        for number in wanted:
            client = redis.Redis(host="127.0.0.1", port=6379, db=number, socket_timeout=10)
            try:
                if client.set(REDIS_OWNER_KEY, self.owner, nx=True, ex=REDIS_OWNER_TTL):
                    return number
                holder = client.get(REDIS_OWNER_KEY)
            except redis.RedisError as exc:
                raise BenchError(f"Redis on 127.0.0.1:6379 is not usable: {exc}") from None
            finally:
                client.close()
            if self.opts.redis_db is not None:
                raise BenchError(f"Redis database {number} is in use by {holder!r}; "
                                 "pick another --redis-db or leave it out")
        raise BenchError("every Redis database 1–15 is taken by test runs; try again later")

    def flush_broker(self) -> None:
        """Empty the bench's Redis database, keeping the claim on it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.flushdb()
        pipe.set(REDIS_OWNER_KEY, self.owner, ex=REDIS_OWNER_TTL)
        pipe.execute()

    def _fresh_database(self) -> None:
        from worker.ledger.migrate import upgrade

        name = self.opts.database
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise BenchError(f"--database must be a plain lower-case name, got {name!r}")
        admin = create_engine(self.opts.pg_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise BenchError(f"cannot create database {name} through {self.opts.pg_admin_url}: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            admin.dispose()
        upgrade(self.db_url)

    def _env(self, **extra: str) -> dict[str, str]:
        """The environment of every process: none of the caller's FIBOSMS_* leaks in."""
        o = self.opts
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIBOSMS_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.update({
            "FIBOSMS_DATABASE_URL": self.db_url,
            "FIBOSMS_BROKER_URL": self.broker_url,
            "FIBOSMS_API_URL": self.gateway.url,
            "FIBOSMS_CLIENT_NO": "BENCH0001",
            "FIBOSMS_CLIENT_PASS": "bench-pass",
            "FIBOSMS_SENDER_NAME": "FIBOBENCH",
            "FIBOSMS_DATA_DIR": str(o.out_dir / "var"),
            # a .env in the working tree must not bring a real account or webhook in
            "FIBOSMS_ENV_FILE": str(o.out_dir / "no.env"),
            "FIBOSMS_LOG_LEVEL": o.log_level,
        })
        env.update(o.extra_env)
        env.update(extra)
        for name in URL_VARS:
            if env.get(name):
                require_loopback_url(name, env[name])
        return env

    def close(self) -> None:
        self.stop_workers()
        if hasattr(self, "watch"):
            self.watch.stop()
        if hasattr(self, "gateway"):
            self.gateway.stop()
        if hasattr(self, "db"):
            self.db.dispose()
        if hasattr(self, "redis"):
            with contextlib.suppress(Exception):
                self.redis.flushdb()
                self.redis.close()

    # -- processes ----------------------------------------------------------------------------

    def start_worker(self, name: str, *, concurrency: int, module: str = "fibosms.cli",
                     queues: str | None = None, env: dict[str, str] | None = None,
                     wait: bool = True) -> Worker:
        o = self.opts
        path = o.out_dir / f"{name}.log"
        args = [sys.executable, "-m", module, "worker", "-P", o.pool, "-c", str(concurrency),
                "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
                "--without-mingle", "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        if queues:
            args += ["-Q", queues]
        with open(path, "wb") as out:
            popen = subprocess.Popen(  # noqa: S603 - our own command line
                args, cwd=ROOT, env=self._env(**(env or {})), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        worker = Worker(name, popen, path)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Worker) -> None:
        def ready() -> bool:
            if worker.popen.poll() is not None:
                raise BenchError(f"worker {worker.name} exited with {worker.popen.returncode}:\n"
                                 f"{worker.tail()}")
            return " ready." in worker.log.read_text(errors="replace")

        wait_for(ready, timeout=60, what=f"worker {worker.name} to be ready",
                 hint=f"see {worker.log}")

    def stop_worker(self, worker: Worker, timeout: float = 30.0) -> None:
        if worker.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.popen.pid, signal.SIGTERM)
            try:
                worker.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"worker {worker.name} did not stop within {timeout:g} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.popen.pid, signal.SIGKILL)
                worker.popen.wait(10)
        # a prefork child or anything else left in the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.popen.pid, signal.SIGKILL)
        if worker in self.workers:
            self.workers.remove(worker)
        errors = [ln for ln in worker.log.read_text(errors="replace").splitlines()
                  if " ERROR " in ln or "Traceback" in ln or " CRITICAL " in ln]
        if errors:
            self.results.setdefault("worker_errors", {})[worker.name] = errors[:20]
            log(f"worker {worker.name} logged {len(errors)} error line(s), e.g.: {errors[0]}")

    def stop_workers(self, workers: list[Worker] | None = None) -> None:
        """Stop ``workers`` (default: all): SIGTERM to every one first, then wait for each."""
        todo = list(self.workers if workers is None else workers)
        for worker in todo:
            if worker.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.popen.pid, signal.SIGTERM)
        for worker in todo:
            self.stop_worker(worker)

    # -- ledger and broker ---------------------------------------------------------------------

    def reset(self) -> None:
        """Empty ledger, broker and the double's counters; no worker may be running."""
        if self.workers:
            raise BenchError("reset with workers running")
        with self.db.transaction() as s:
            tables = [r[0] for r in s.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('alembic_version', 'fibo_account_state')"))]
            if tables:
                s.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                               + " RESTART IDENTITY CASCADE"))
            s.execute(text("UPDATE fibo_account_state SET paused = false"))
        self.flush_broker()
        self.gateway.reset()

    def truncate_ledger(self) -> None:
        """Empty the ledger only (workers may be running and idle; the broker is empty)."""
        with self.db.transaction() as s:
            s.execute(text("TRUNCATE sms_failures, sms_messages RESTART IDENTITY CASCADE"))

    def pg_counters(self) -> dict[str, int]:
        """PostgreSQL's own counters for the bench database (sessions opened, commits)."""
        with self.db.sessions() as s:
            row = s.execute(text(
                "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = :d"),
                {"d": self.opts.database}).one()
        return {"sessions": int(row[0]), "xact_commit": int(row[1])}

    def status_counts(self) -> dict[str, int]:
        with self.db.sessions() as s:
            return {st: n for st, n in s.execute(text(
                "SELECT status, count(*) FROM sms_messages GROUP BY status"))}

    def broker_state(self) -> str:
        """What the broker holds now, for error messages: each queue's length, unacked."""
        try:
            pipe = self.redis.pipeline()
            for q in QUEUES:
                pipe.llen(q)
            pipe.hlen("unacked")
            values = pipe.execute()
        except redis.RedisError as exc:
            return f"broker unreadable ({type(exc).__name__})"
        return ", ".join(f"{name}={v}" for name, v in zip((*QUEUES, "unacked"), values,
                                                          strict=True))

    def broker_remaining(self) -> int:
        pipe = self.redis.pipeline()
        for q in QUEUES:
            pipe.llen(q)
        pipe.hlen("unacked")
        return int(sum(pipe.execute()))

    def wait_final(self, n: int, *, what: str, workers: list[Worker],
                   ids: list[int] | None = None) -> dict[str, int]:
        """Wait until ``n`` rows (or the rows ``ids``) are final; bounded, stall-checked."""
        o = self.opts
        started = last_progress = time.monotonic()
        last_done = -1
        while True:
            if ids is None:
                counts = self.status_counts()
            else:
                with self.db.sessions() as s:
                    counts = {st: c for st, c in s.execute(text(
                        "SELECT status, count(*) FROM sms_messages WHERE id = ANY(:ids) "
                        "GROUP BY status"), {"ids": ids})}
            done = sum(counts.get(st, 0) for st in FINAL)
            if done >= n:
                return counts
            now = time.monotonic()
            if done != last_done:
                last_done, last_progress = done, now
            for w in workers:
                if w.popen.poll() is not None:
                    raise BenchError(f"worker {w.name} exited ({w.popen.returncode}) while "
                                     f"waiting for {what}:\n{w.tail()}")
            logs = ", ".join(str(w.log) for w in workers)
            if now - last_progress > o.stall_seconds:
                raise BenchError(f"no progress for {o.stall_seconds:g} s waiting for {what}: "
                                 f"ledger {counts}; broker {self.broker_state()}; see {logs}")
            if now - started > o.part_timeout:
                raise BenchError(f"{what} took over {o.part_timeout:g} s (--part-timeout): "
                                 f"ledger {counts}; broker {self.broker_state()}; see {logs}")
            time.sleep(0.2)

    def ledger_stats(self, *, kinds: Sequence[str] | None = None,
                     ids: list[int] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"kinds": list(kinds) if kinds else None, "ids": ids}
        with self.db.sessions() as s:
            rows = s.execute(text(
                "SELECT EXTRACT(EPOCH FROM created_at)::float8, "
                "EXTRACT(EPOCH FROM sent_at)::float8 FROM sms_messages WHERE status = 'sent' "
                "AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[]))) "
                "AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))"),
                params).all()
            statuses = {st: n for st, n in s.execute(text(
                "SELECT status, count(*) FROM sms_messages GROUP BY status"))}
        if not rows:
            return {"sent": 0, "statuses": statuses}
        created = [r[0] for r in rows]
        sent = [r[1] for r in rows]
        lat = [b - a for a, b in rows]
        first_sent, last_sent = min(sent), max(sent)
        span = last_sent - first_sent
        return {
            "sent": len(rows),
            "statuses": statuses,
            "first_created": min(created),
            "last_created": max(created),
            "first_sent": first_sent,
            "last_sent": last_sent,
            "drain_rate": (len(rows) - 1) / span if span > 0 else None,
            "e2e_rate": len(rows) / (last_sent - min(created)) if last_sent > min(created)
            else None,
            "latency_p50": percentile(lat, 50),
            "latency_p99": percentile(lat, 99),
            "latency_max": max(lat),
        }

    # -- producer -------------------------------------------------------------------------------

    def enqueue_one_by_one(self, n: int, *, kinds: Sequence[str] = ("otp", "transactional"),
                           offset: int = 0, rate: float | None = None) -> tuple[list[int], float]:
        ids = []
        started = time.monotonic()
        due = started
        for i in range(n):
            ids.append(self.producer.enqueue_sms(phone(offset + i), OTP_TEXT,
                                                 kind=kinds[i % len(kinds)]))
            if rate:
                due += 1.0 / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        return ids, time.monotonic() - started

    def enqueue_many(self, n: int, *, kind: str = "marketing",
                     offset: int = 0) -> tuple[list[int], float]:
        batch = [{"phone": phone(offset + i), "text": BULK_TEXT} for i in range(n)]
        started = time.monotonic()
        ids = self.producer.enqueue_many(batch, kind=kind)
        return ids, time.monotonic() - started

    # -- measuring a drain --------------------------------------------------------------------

    def drain(self, label: str, n: int, *, concurrency: int, kinds: Sequence[str],
              profile_key: str | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
        """Start one worker on a pre-filled queue; measure until every row is final."""
        since = time.time()
        self.gateway.reset()
        pg_before = self.pg_counters()
        worker = self.start_worker(f"{label}-c{concurrency}", concurrency=concurrency, env=env)
        phase = Phase(self.groups)
        phase.start()
        self.watch.reset_peak()
        spy = self.start_profile(profile_key, worker) if profile_key else None
        try:
            self.wait_final(n, what=f"{label}: {n} messages", workers=[worker])
        finally:
            phase.end()
            if spy is not None:
                self.finish_profile(spy, label)
        peak = self.watch.peak_rss
        gw = self.gateway.count()
        self.stop_worker(worker)
        time.sleep(0.6)  # PostgreSQL flushes its statistics at most every 500 ms
        pg_after = self.pg_counters()
        stats = self.ledger_stats(kinds=kinds)
        gw_span = (gw["last_send"] or 0) - (gw["first_send"] or 0)
        out = {
            **stats,
            "messages": n,
            "concurrency": concurrency,
            "pool": self.opts.pool,
            "wall_seconds": phase.wall,
            "gateway_sends": gw["send"],
            "gateway_rate": (gw["send"] - 1) / gw_span if gw_span > 0 else None,
            "gateway_connections": gw["connections"],
            "cpu_seconds": phase.used,
            "cpu_system_seconds": phase.used_system,
            "cpu_ms_per_message": {k: 1000 * v / n for k, v in phase.used.items()},
            "machine_busy_cores": phase.system_used / phase.wall if phase.wall else None,
            "worker_cpu_cores": phase.used["workers"] / phase.wall if phase.wall else None,
            "worker_peak_rss_mb": peak / 2**20,
            "since": since,
            # the bench's own status polling adds ~5 transactions per second
            "pg_sessions_opened": pg_after["sessions"] - pg_before["sessions"],
            "pg_commits_per_message": (pg_after["xact_commit"] - pg_before["xact_commit"]) / n,
        }
        if stats.get("sent", 0) < n:
            log(f"{label}: only {stats.get('sent', 0)} of {n} sent: {stats['statuses']}")
        return out

    # -- profiling ---------------------------------------------------------------------------------

    def start_profile(
        self, key: str, worker: Worker
    ) -> tuple[subprocess.Popen[bytes], Path] | None:
        if key not in self.opts.profile:
            return None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            log("py-spy is not installed (pip install -e '.[bench]'); no profile")
            return None
        raw = self.opts.out_dir / f"profile-{key}.raw"
        args = [exe, "record", "--pid", str(worker.popen.pid), "--rate", "100", "--format", "raw",
                "--output", str(raw), "--nonblocking", "--subprocesses"]
        if self.opts.profile_gil:
            args.append("--gil")
        with open(self.opts.out_dir / f"py-spy-{key}.log", "wb") as err:
            popen = subprocess.Popen(  # noqa: S603 - py-spy on our own worker's pid
                args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        return popen, raw

    def finish_profile(self, spy: tuple[subprocess.Popen[bytes], Path], label: str) -> None:
        from bench.pyspy_summary import render, summarize

        popen, raw = spy
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGINT)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
        if not raw.exists():
            log(f"py-spy wrote no profile for {label}")
            return
        summary = summarize(raw.read_text(errors="replace"))
        self.results.setdefault("profiles", {})[label] = {"raw": str(raw), **summary}
        (self.opts.out_dir / f"profile-{label}.txt").write_text(render(summary) + "\n")
        log(f"profile of {label}: {self.opts.out_dir / f'profile-{label}.txt'}")

    # -- parts ------------------------------------------------------------------------------------

    def ceiling(self, concurrency: int) -> float | None:
        return self.ceilings.get(concurrency)

    def part_ceilings(self) -> None:
        o = self.opts
        from bench.loadgen import measure

        res: dict[str, Any] = {}
        self.reset()
        log("ceiling: the gateway double's raw rate (bench.loadgen, 64 connections)")
        lg = measure("127.0.0.1", self.gateway.port, connections=64, seconds=o.loadgen_seconds)
        res["gateway_loadgen"] = lg
        self.rows.append(Row("ceiling", "gateway double raw (bench.loadgen, 64 conn)", lg["rate"],
                             "req/s", note=f"{o.gateway_processes} double processes"))
        wrk = shutil.which("wrk")
        if wrk:
            log("ceiling: the gateway double's raw rate (wrk -t1 -c64)")
            url = f"{self.gateway.url}/SendMT/service.asmx/SendMaskedSMS?clientNo=BENCH0001" \
                  "&clientPass=bench-pass&phoneNumber=0912345678&smsMessage=Ma+OTP"
            proc = subprocess.run([wrk, "-t1",  # noqa: S603 - loopback URL of our double "-c64", f"-d{max(1, int(o.loadgen_seconds))}s",
                                   url], capture_output=True, text=True, timeout=60, check=False)
            m = re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout)
            if m:
                res["gateway_wrk"] = float(m.group(1))
                self.rows.append(Row("ceiling", "gateway double raw (wrk -t1 -c64)",
                                     float(m.group(1)), "req/s"))
        self.gateway.configure(latency_ms=o.latency_ms)
        lat = measure("127.0.0.1", self.gateway.port, connections=256, seconds=o.loadgen_seconds)
        self.gateway.configure(latency_ms=0)
        res["gateway_loadgen_latency"] = lat
        self.rows.append(Row("ceiling", f"gateway double at {o.latency_ms:g} ms (256 conn)",
                             lat["rate"], "req/s",
                             note=f"ideal {256 / (o.latency_ms / 1000):,.0f}"))

        for c in o.concurrency:
            r = self.noop_drain(c, events=True)
            res[f"noop_c{c}"] = r
            self.ceilings[c] = r["rate"]
            self.rows.append(Row("ceiling", f"no-op Celery task, {o.pool} c={c}", r["rate"],
                                 "tasks/s", fraction=1.0,
                                 note=f"publish {r['publish_rate']:,.0f}/s; worker "
                                      f"{r['worker_cpu_cores']:.2f} cores"))
            if o.noop_events_off:
                r2 = self.noop_drain(c, events=False)
                res[f"noop_c{c}_events_off"] = r2
                self.ceilings_events_off[c] = r2["rate"]
                self.rows.append(Row("ceiling", f"no-op, task events off, c={c}", r2["rate"],
                                     "tasks/s", fraction=r2["rate"] / r["rate"],
                                     note="informative: what Flower's events cost"))
        self.results["ceilings"] = res

    def noop_drain(self, concurrency: int, *, events: bool) -> dict[str, Any]:
        from bench.noop_app import EVENTS_ENV, make_noop_app, publish_noops

        n = self.opts.messages
        self.reset()
        app = make_noop_app(self.settings, events=None if events else False)
        log(f"ceiling: publishing {n} no-op tasks (events {'on' if events else 'off'})")
        t0 = time.monotonic()
        publish_noops(app, n)
        publish_rate = n / (time.monotonic() - t0)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic(), self.broker_remaining()))
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        phase = Phase(self.groups)
        try:
            worker = self.start_worker(f"noop-c{concurrency}{'' if events else '-noevents'}",
                                       module="bench.noop_app", concurrency=concurrency,
                                       env={EVENTS_ENV: "1" if events else "0"}, wait=False)
            self.wait_ready(worker)
            phase.start()
            wait_for(lambda: bool(samples) and samples[-1][1] == 0,
                     timeout=self.opts.part_timeout, what=f"{n} no-op tasks to drain",
                     hint=f"see {worker.log}")
            phase.end()
        finally:
            stop.set()
            sampler.join(5)
        self.stop_worker(worker)
        begun = next(((t, r) for t, r in samples if r < n), None)
        ended = next((t for t, r in samples if r == 0), None)
        if begun is None or ended is None or ended <= begun[0]:
            raise BenchError("could not time the no-op drain")
        rate = begun[1] / (ended - begun[0])
        app.close()
        return {"rate": rate, "publish_rate": publish_rate, "tasks": n,
                "concurrency": concurrency, "events": events,
                "drain_seconds": ended - begun[0],
                "worker_cpu_cores": phase.used.get("workers", 0.0) / phase.wall
                if phase.wall else 0.0,
                "cpu_ms_per_task": {k: 1000 * v / n for k, v in phase.used.items()}}

    def part_enqueue(self) -> None:
        n1 = self.opts.enqueue_messages
        n = self.opts.messages
        res: dict[str, Any] = {}
        self.reset()
        log(f"enqueue: {n1} × enqueue_sms, no worker running")
        _, secs = self.enqueue_one_by_one(n1)
        res["enqueue_sms"] = {"messages": n1, "seconds": secs, "rate": n1 / secs}
        self.reset()
        log(f"enqueue: enqueue_many of {n} marketing messages, no worker running")
        _, secs2 = self.enqueue_many(n)
        res["enqueue_many"] = {"messages": n, "seconds": secs2, "rate": n / secs2}
        self.reset()
        self.results["enqueue"] = res
        self.rows.append(Row("enqueue", f"enqueue_sms one by one × {n1:,}", n1 / secs, "msg/s",
                             note="validate, INSERT + commit, publish; one thread"))
        self.rows.append(Row("enqueue", f"enqueue_many, one call of {n:,}", n / secs2, "msg/s",
                             target=f"≥ {TARGET_ENQUEUE_MANY_RATE:,.0f}/s",
                             ok=n / secs2 >= TARGET_ENQUEUE_MANY_RATE,
                             note="marketing: published as send_batch tasks"))

    def part_single(self, concurrency: int) -> None:
        o = self.opts
        n = o.messages
        res: dict[str, Any] = {}
        kinds = ("otp", "transactional")
        self.reset()
        log(f"single c={concurrency}: enqueue_sms × {n} (otp/transactional), then one worker")
        _, secs = self.enqueue_one_by_one(n, kinds=kinds)
        res["enqueue_rate"] = n / secs
        d = self.drain("single", n, concurrency=concurrency, kinds=kinds, profile_key="single")
        res["drain"] = d
        self._drain_rows("single", f"drain, pre-filled queue, c={concurrency}", d,
                         self.ceiling(concurrency), TARGET_SINGLE_FRACTION,
                         note=f"gateway saw {d['gateway_rate'] or 0:,.0f}/s")

        if o.e2e:
            res.update(self.single_e2e(concurrency, kinds, d.get("drain_rate")))
        self.results[f"single_c{concurrency}"] = res

    def single_e2e(self, concurrency: int, kinds: Sequence[str],
                   drain_rate: float | None) -> dict[str, Any]:
        o = self.opts
        n = o.e2e_messages
        res: dict[str, Any] = {}
        self.reset()
        worker = self.start_worker(f"single-e2e-c{concurrency}", concurrency=concurrency)
        try:
            log(f"single c={concurrency}: end to end, enqueue_sms × {n} flat out, worker running")
            phase = Phase(self.groups)
            phase.start()
            _, secs = self.enqueue_one_by_one(n, kinds=kinds)
            self.wait_final(n, what="end-to-end messages", workers=[worker])
            phase.end()
            st = self.ledger_stats(kinds=kinds)
            res["e2e_flat_out"] = {**st, "enqueue_rate": n / secs, "cpu_seconds": phase.used}
            self.rows.append(Row("single", f"end to end, flat out, c={concurrency}",
                                 st.get("e2e_rate"), "msg/s",
                                 fraction=(st["e2e_rate"] / self.ceilings[concurrency])
                                 if concurrency in self.ceilings and st.get("e2e_rate") else None,
                                 note=f"enqueue {n / secs:,.0f}/s in parallel; p50 "
                                      f"{st.get('latency_p50') or 0:.2f} s p99 "
                                      f"{st.get('latency_p99') or 0:.2f} s (backlog)"))

            rate = o.paced_rate or (0.8 * drain_rate if drain_rate else 100.0)
            m = max(50, int(rate * o.paced_seconds))
            self.truncate_ledger()
            log(f"single c={concurrency}: end to end paced at {rate:,.0f}/s for "
                f"{o.paced_seconds:g} s ({m} messages)")
            _, secs = self.enqueue_one_by_one(m, kinds=kinds, offset=n, rate=rate)
            self.wait_final(m, what="paced messages", workers=[worker])
            st2 = self.ledger_stats(kinds=kinds)
            res["e2e_paced"] = {**st2, "offered_rate": m / secs, "target_rate": rate}
            self.rows.append(Row("single", f"latency p50 at {m / secs:,.0f}/s offered",
                                 st2.get("latency_p50"), "s", note="created_at → sent_at"))
            self.rows.append(Row("single", f"latency p99 at {m / secs:,.0f}/s offered",
                                 st2.get("latency_p99"), "s",
                                 note=f"max {st2.get('latency_max') or 0:.3f} s"))
        finally:
            self.stop_worker(worker)
        return res

    def part_bulk(self, concurrency: int) -> None:
        n = self.opts.messages
        self.reset()
        log(f"bulk c={concurrency}: enqueue_many × {n} marketing, then one worker")
        _, secs = self.enqueue_many(n)
        d = self.drain("bulk", n, concurrency=concurrency, kinds=("marketing",),
                       profile_key="bulk")
        d["enqueue_many_rate"] = n / secs
        self.results[f"bulk_c{concurrency}"] = d
        self._drain_rows("bulk", f"drain, pre-filled queue, c={concurrency}", d,
                         self.ceiling(concurrency), TARGET_BULK_FRACTION,
                         note=f"gateway saw {d['gateway_rate'] or 0:,.0f}/s; "
                              f"enqueue_many {n / secs:,.0f}/s")
        off = self.ceilings_events_off.get(concurrency)
        if off:
            self.reset()
            log(f"bulk c={concurrency}: the same with task events off")
            self.enqueue_many(n)
            d2 = self.drain("bulk-noevents", n, concurrency=concurrency, kinds=("marketing",),
                            env={"FIBOSMS_TASK_EVENTS": "false"})
            self.results[f"bulk_c{concurrency}_events_off"] = d2
            self._drain_rows("bulk", f"drain, task events off, c={concurrency}", d2, off,
                             TARGET_BULK_FRACTION, against="no-op, events off",
                             note=f"against the events-off no-op's {off:,.0f}/s")

    def _drain_rows(self, section: str, name: str, d: dict[str, Any], ceiling: float | None,
                    target: float, *, note: str, against: str = "no-op") -> None:
        """A drain's rate as a fraction of ``ceiling``, held to ``target``; then the
        worker's CPU and memory rows of the same drain."""
        frac = d["drain_rate"] / ceiling if ceiling and d.get("drain_rate") else None
        self.rows.append(Row(section, name, d.get("drain_rate"), "msg/s", fraction=frac,
                             target=f"≥ {target} × {against}",
                             ok=None if frac is None else frac >= target, note=note))
        self._resource_rows(section, d)

    def part_latency(self, concurrency: int) -> None:
        o = self.opts
        n = o.latency_messages
        self.gateway.configure(latency_ms=o.latency_ms)
        try:
            for label, kinds in (("single", ("otp", "transactional")), ("bulk", ("marketing",))):
                self.reset()
                self.gateway.configure(latency_ms=o.latency_ms)
                log(f"latency {o.latency_ms:g} ms, {label} c={concurrency}: {n} messages")
                if label == "single":
                    self.enqueue_one_by_one(n, kinds=kinds)
                else:
                    self.enqueue_many(n)
                d = self.drain(f"latency-{label}", n, concurrency=concurrency, kinds=kinds,
                               profile_key=f"latency-{label}")
                self.results[f"latency_{label}_c{concurrency}"] = d
                rate = d.get("drain_rate")
                self.rows.append(Row(
                    f"{o.latency_ms:g} ms gw", f"{label} drain, 1 worker process, c={concurrency}",
                    rate, "msg/s", target=f"≥ {TARGET_LATENCY_RATE:,.0f}/s",
                    ok=None if rate is None else rate >= TARGET_LATENCY_RATE,
                    note=f"ideal c/latency = {concurrency / (o.latency_ms / 1000):,.0f}/s; "
                         f"worker {d['worker_cpu_cores'] or 0:.2f} cores"))
        finally:
            self.gateway.configure(latency_ms=0)

    def _resource_rows(self, section: str, d: dict[str, Any]) -> None:
        per = d["cpu_ms_per_message"]
        where = ", ".join(f"{k.split(' ')[0]} {v:.2f}" for k, v in per.items() if k != "workers")
        used = d["cpu_seconds"]["workers"]
        kernel = d["cpu_system_seconds"]["workers"] / used * 100 if used else 0.0
        self.rows.append(Row(section, "  worker CPU per message", per["workers"], "ms",
                             note=f"{d['worker_cpu_cores'] or 0:.2f} cores busy, {kernel:.0f}% "
                                  f"kernel; others (ms/msg): {where}; machine "
                                  f"{d['machine_busy_cores'] or 0:.2f} cores"))
        self.rows.append(Row(section, "  worker peak RSS (process tree)",
                             d["worker_peak_rss_mb"], "MiB",
                             note=f"PostgreSQL: {d['pg_sessions_opened']} sessions opened, "
                                  f"{d['pg_commits_per_message']:.1f} commits per message; "
                                  f"{d['gateway_connections']} HTTP connections to the gateway"))

    def part_ratelimit(self) -> None:
        o = self.opts
        limit = o.rate_limit
        c = o.concurrency[0]
        n = int(limit * o.ratelimit_seconds * 1.5) + 300
        self.reset()
        env = {"FIBOSMS_RATE_LIMIT": f"{limit:g}"}
        log(f"ratelimit: FIBOSMS_RATE_LIMIT={limit:g}, {o.ratelimit_workers} worker processes "
            f"({o.pool} c={c}) for {o.ratelimit_seconds:g} s; {n} messages")
        workers = [self.start_worker(f"ratelimit-{i}", concurrency=c, env=env, wait=False)
                   for i in range(o.ratelimit_workers)]
        try:
            for w in workers:
                self.wait_ready(w)
            per_kind = n // 3
            self.enqueue_many(per_kind, kind="transactional")
            self.enqueue_many(per_kind, kind="marketing", offset=per_kind)
            self.enqueue_many(n - 2 * per_kind, kind="otp", offset=2 * per_kind)
            t0 = time.time()
            end = t0 + o.ratelimit_seconds
            drained_at = None
            while time.time() < end:
                for w in workers:
                    if w.popen.poll() is not None:
                        raise BenchError(f"worker {w.name} exited during the rate-limit run:\n"
                                         f"{w.tail()}")
                if drained_at is None and self.broker_remaining() == 0:
                    counts = self.status_counts()
                    if sum(counts.get(s, 0) for s in FINAL) >= n:
                        drained_at = time.time() - t0
                        break
                time.sleep(0.5)
            gw = self.gateway.count(since=t0, until=min(end, time.time()))
        finally:
            self.stop_workers(workers)
        window = drained_at if drained_at is not None else o.ratelimit_seconds
        per_second = gw.get("per_second", [])
        full = per_second[: int(window)] or per_second
        total = sum(gw["buckets"]["counts"])
        mean = total / window if window > 0 else 0.0
        res = {
            "rate_limit": limit, "workers": o.ratelimit_workers, "concurrency": c,
            "pool": o.pool, "messages": n, "window_seconds": window,
            "queue_drained_after": drained_at, "sends_in_window": total,
            "mean": mean, "min": min(full) if full else None, "max": max(full) if full else None,
            "per_second": per_second, "max_100ms": gw.get("max_100ms"),
            "max_1s": gw.get("max_1s"),
            "limit_in_effect": mean <= 1.2 * limit,
        }
        self.results["ratelimit"] = res
        note = "" if res["limit_in_effect"] else "no limit in effect"
        if drained_at is not None:
            note += f"{'; ' if note else ''}queue drained after {drained_at:.1f} s"
        sec = f"limit {limit:g}/s"
        self.rows.append(Row(sec, f"gateway rate, mean over {window:.0f} s", mean, "msg/s",
                             target=f"{limit:g}/s", ok=abs(mean - limit) <= 0.1 * limit,
                             note=f"{(mean - limit) / limit * 100:+.0f}% from {limit:g}; {note}"))
        if full:
            self.rows.append(Row(sec, "per-second min / max", float(min(full)), "msg/s",
                                 note=f"max {max(full)} ({(max(full) - limit) / limit * 100:+.0f}"
                                      f"%), min {(min(full) - limit) / limit * 100:+.0f}%"))
        self.rows.append(Row(sec, "max in any 100 ms window", gw.get("max_100ms"), "msg",
                             note=f"a steady {limit:g}/s gives ~{limit / 10:.0f}"))
        # the workers' bucket: FIBOSMS_RATE_BURST when given, else one second's worth
        burst = float(self.opts.extra_env.get("FIBOSMS_RATE_BURST", limit))
        self.rows.append(Row(sec, "max in any 1 s window", gw.get("max_1s"), "msg",
                             ok=(gw.get("max_1s") or 0) <= limit + burst,
                             target=f"≤ {limit + burst:g} (limit + burst)",
                             note="arrivals at the gateway, 10 ms resolution"))

    def part_priority(self) -> None:
        o = self.opts
        c = o.priority_concurrency
        layouts = ("split", "shared") if o.priority_layout == "both" else (o.priority_layout,)
        for layout in layouts:
            self.reset()
            log(f"priority ({layout}): enqueue_many × {o.priority_bulk} marketing")
            self.enqueue_many(o.priority_bulk)
            if layout == "split":
                workers = [self.start_worker("prio-urgent", concurrency=c, queues="urgent",
                                             wait=False),
                           self.start_worker("prio-bulk", concurrency=c, queues="default,bulk",
                                             wait=False)]
            else:
                workers = [self.start_worker("prio-shared", concurrency=c, wait=False)]
            try:
                for w in workers:
                    self.wait_ready(w)
                log(f"priority ({layout}): one OTP every 100 ms for {o.priority_seconds:g} s")
                count = int(o.priority_seconds * 10)
                t0 = time.time()
                otp_ids, _ = self.enqueue_one_by_one(count, kinds=("otp",),
                                                     offset=o.priority_bulk, rate=10.0)
                t1 = time.time()
                self.wait_final(len(otp_ids), what="the OTPs", workers=workers, ids=otp_ids)
                st = self.ledger_stats(ids=otp_ids)
                with self.db.sessions() as s:
                    bulk_sent = s.execute(text(
                        "SELECT count(*) FROM sms_messages WHERE kind = 'marketing' AND "
                        "status = 'sent' AND sent_at BETWEEN to_timestamp(:a) AND to_timestamp(:b)"
                    ), {"a": t0, "b": t1}).scalar_one()
            finally:
                self.stop_workers(workers)
            res = {**st, "otps": count, "layout": layout, "bulk_queued": o.priority_bulk,
                   "bulk_sent_during_otps": bulk_sent,
                   "bulk_rate_during_otps": bulk_sent / (t1 - t0)}
            self.results[f"priority_{layout}"] = res
            workers_desc = ("-Q urgent + -Q default,bulk" if layout == "split"
                            else "one worker, all queues")
            p99 = st.get("latency_p99")
            self.rows.append(Row(f"priority {layout}", f"OTP latency p50 ({workers_desc})",
                                 st.get("latency_p50"), "s",
                                 note=f"{o.priority_bulk:,} bulk queued; c={c} each"))
            self.rows.append(Row(f"priority {layout}", "OTP latency p99", p99, "s",
                                 target=f"< {TARGET_OTP_P99:g} s",
                                 ok=None if p99 is None else p99 < TARGET_OTP_P99,
                                 note=f"max {st.get('latency_max') or 0:.3f} s; bulk meanwhile "
                                      f"{res['bulk_rate_during_otps']:,.0f}/s"))

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> None:
        parts = self.opts.parts
        if "ceilings" in parts:
            self.part_ceilings()
        if "enqueue" in parts:
            self.part_enqueue()
        for c in self.opts.concurrency:
            if "single" in parts:
                self.part_single(c)
            if "bulk" in parts:
                self.part_bulk(c)
            if "latency" in parts:
                self.part_latency(c)
        if "ratelimit" in parts:
            self.part_ratelimit()
        if "priority" in parts:
            self.part_priority()
        if "floor" in parts:
            self.part_floor()
        if "cli" in parts:
            self.part_cli()

    # -- issue 15: enqueue_sms against its floor, and the command line's start-up ---------------

    def bare_loop(self, n: int, offset: int, *, autocommit: bool = False) -> tuple[float, float]:
        """The durable work of one enqueue_sms with nothing around it: INSERT the row the
        producer would insert, COMMIT, LPUSH the task message kombu would write for its id onto
        the same queue. ``autocommit``: the INSERT alone, committed by itself (one round trip
        instead of BEGIN, INSERT, COMMIT), as enqueue_sms records a plain message. Wall
        seconds and this process's CPU seconds for ``n``."""
        import base64

        import psycopg

        from producer.validate import validate
        from worker.clock import now

        dsn = self.db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        client = redis.Redis.from_url(self.broker_url, socket_timeout=10)
        template = validate(phone(offset), OTP_TEXT, settings=self.settings, now=now(),
                            kind="transactional")
        columns = list(template.row(now()))
        sql = (f"INSERT INTO sms_messages ({', '.join(columns)}) "  # noqa: S608 - our columns
               f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id")
        queue = template.queue
        origin = f"gen{os.getpid()}@{platform.node()}"
        reply_to = str(uuid.uuid4())
        embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        with psycopg.connect(dsn, autocommit=autocommit) as conn:
            started, cpu = time.monotonic(), time.process_time()
            for i in range(n):
                at = now()
                row = {**template.row(at), "recipient": phone(offset + i)}
                with conn.cursor() as cur:
                    cur.execute(sql, [row[c] for c in columns])
                    fetched = cur.fetchone()
                    assert fetched is not None
                    mid = fetched[0]
                if not autocommit:
                    conn.commit()
                task_id = str(uuid.uuid4())
                body = json.dumps([[mid], {}, embed]).encode()
                client.lpush(queue, json.dumps({
                    "body": base64.b64encode(body).decode(),
                    "content-encoding": "utf-8",
                    "content-type": "application/json",
                    "headers": {
                        "lang": "py", "task": "fibosms.send_sms", "id": task_id,
                        "shadow": None, "eta": None, "expires": None, "group": None,
                        "group_index": None, "retries": 0, "timelimit": [None, None],
                        "root_id": task_id, "parent_id": None, "argsrepr": f"[{mid}]",
                        "kwargsrepr": "{}", "origin": origin, "ignore_result": None,
                        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
                    },
                    "properties": {
                        "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
                        "delivery_info": {"exchange": "", "routing_key": queue},
                        "priority": 0, "body_encoding": "base64",
                        "delivery_tag": str(uuid.uuid4()),
                    },
                }))
            secs, cpu_secs = time.monotonic() - started, time.process_time() - cpu
        client.close()
        return secs, cpu_secs

    def part_floor(self) -> None:
        """enqueue_sms one by one against the bare loops, in alternating turns (the machine's
        other load weighs on each); the ratio of the medians."""
        n = self.opts.floor_messages
        turns = self.opts.floor_turns
        runs: dict[str, list[tuple[float, float]]] = {"bare": [], "bare1": [], "enqueue": []}

        def one(kind: str) -> None:
            self.reset()
            if kind == "enqueue":
                started, cpu = time.monotonic(), time.process_time()
                self.enqueue_one_by_one(n, kinds=("transactional",))
                secs, cpu_secs = time.monotonic() - started, time.process_time() - cpu
            else:
                secs, cpu_secs = self.bare_loop(n, 0, autocommit=kind == "bare1")
            if self.broker_remaining() != n:
                raise BenchError(f"{kind} left {self.broker_remaining()} of {n} tasks")
            runs[kind].append((n / secs, 1000 * cpu_secs / n))

        # warm-ups: connections opened, statements prepared
        self.reset()
        self.bare_loop(50, 0)
        self.bare_loop(50, 0, autocommit=True)
        self.enqueue_one_by_one(50, kinds=("transactional",))
        for turn in range(turns):
            log(f"floor turn {turn + 1}/{turns}: bare loop, bare autocommit loop, enqueue_sms, "
                f"× {n} each")
            for kind in ("bare", "bare1", "enqueue"):
                one(kind)
        self.reset()

        def median(kind: str, at: int) -> float:
            return sorted(r[at] for r in runs[kind])[len(runs[kind]) // 2]

        ratio = median("enqueue", 0) / median("bare", 0)
        ratio1 = median("enqueue", 0) / median("bare1", 0)
        self.results["floor"] = {
            "messages": n, "turns": turns,
            **{kind: {"rates": [r[0] for r in v], "cpu_ms_per_message": [r[1] for r in v],
                      "rate_median": median(kind, 0), "cpu_ms_median": median(kind, 1)}
               for kind, v in runs.items()},
            "ratio": ratio, "ratio_to_autocommit_floor": ratio1, "loadavg": loadavg(),
        }

        def note(kind: str) -> str:
            rates = ", ".join(f"{r[0]:,.0f}" for r in runs[kind])
            return f"turns {rates}; CPU {median(kind, 1):.2f} ms/msg"

        self.rows.append(Row("floor", f"bare INSERT, COMMIT, LPUSH × {n:,} ({turns} turns)",
                             median("bare", 0), "msg/s", note=note("bare")))
        self.rows.append(Row("floor", f"bare autocommitted INSERT, LPUSH × {n:,}",
                             median("bare1", 0), "msg/s", note=note("bare1")))
        self.rows.append(Row(
            "floor", f"enqueue_sms one by one × {n:,}", median("enqueue", 0), "msg/s",
            target=f"≥ {TARGET_FLOOR_FRACTION} × bare", ok=ratio >= TARGET_FLOOR_FRACTION,
            note=f"{ratio:.2f} × bare, {ratio1:.2f} × bare autocommit; {note('enqueue')}"))

    def part_cli(self) -> None:
        """``fibosms --help`` and ``fibosms send`` as a user runs them: a new process each
        time, wall time from spawn to exit; on the bench's PostgreSQL + Redis, then on the
        defaults (SQLite ledger and broker files) in a fresh directory. The project's
        bytecode is brought up to date first, as an installed package has it (``make
        bytecode``): otherwise, where PYTHONDONTWRITEBYTECODE is set, each run would compile
        the modules it imports."""
        import compileall

        for package in ("worker", "producer", "fibosms"):
            compileall.compile_dir(str(ROOT / package), quiet=1)
        runs = self.opts.cli_runs
        script = Path(sys.executable).with_name("fibosms")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "fibosms.cli"]
        workdir = self.opts.out_dir / "cli-default"
        workdir.mkdir(parents=True, exist_ok=True)
        plain = {k: v for k, v in self.env.items() if not k.startswith("FIBOSMS_")}
        plain["FIBOSMS_ENV_FILE"] = str(workdir / "no.env")
        subprocess.run([*command, "db", "upgrade"],  # noqa: S603 - our own command
                       cwd=workdir, env=plain, check=True, capture_output=True, timeout=120)
        self.reset()
        results: dict[str, Any] = {}
        # (label, command line, environment, target); taken in turns, one run of each per
        # round, so the machine's other load weighs on all of them alike
        cases: list[tuple[str, list[str], dict[str, str], float | None]] = [
            ("fibosms --help", [*command, "--help"], self.env, TARGET_HELP_SECONDS),
            ("fibosms send, PostgreSQL + Redis", [*command, "send", phone(1), OTP_TEXT],
             self.env, TARGET_SEND_SECONDS),
            ("fibosms send, SQLite defaults", [*command, "send", phone(2), OTP_TEXT], plain,
             TARGET_SEND_SECONDS),
            ("python -c pass (for scale)", [sys.executable, "-c", "pass"], plain, None),
            ("import of what send needs (for scale)", [sys.executable, "-c", FLOOR_IMPORTS],
             plain, None),
            ("the same with SQLAlchemy and redis-py (for scale)",
             [sys.executable, "-c", FLOOR_IMPORTS_FULL], plain, None),
        ]
        walls: dict[str, list[float]] = {label: [] for label, *_ in cases}
        for _ in range(runs):
            for label, argv, env, _target in cases:
                started = time.perf_counter()
                done = subprocess.run(argv, cwd=workdir, env=env,  # noqa: S603 - our commands
                                      capture_output=True, timeout=60)
                walls[label].append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise BenchError(f"{' '.join(argv[-3:])} exited {done.returncode}: "
                                     f"{done.stderr.decode(errors='replace')[-500:]}")
        for label, _argv, _env, target in cases:
            w = walls[label]
            median = sorted(w)[len(w) // 2]
            results[label] = {"runs": runs, "median": median, "max": max(w), "min": min(w),
                              "walls": w}
            self.rows.append(Row(
                "cli", f"{label} ({runs} runs, median)", median, "s",
                target="" if target is None else f"< {target} s",
                ok=None if target is None else median < target,
                note=f"min {min(w):.3f} s, max {max(w):.3f} s"))
        results["loadavg"] = loadavg()
        self.results["cli"] = results
        self.reset()


def _with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _git() -> str:
    try:
        git = shutil.which("git")
        if git is None:
            return "?"
        rev = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=ROOT,  # noqa: S603
                             capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run([git, "status", "--porcelain"], cwd=ROOT,  # noqa: S603
                               capture_output=True, text=True, timeout=10,
                               check=False).stdout.strip().splitlines()
    except OSError:
        return "?"
    return f"{rev}{f' +{len(dirty)} changed files' if dirty else ''}"


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="fibosms throughput benchmark (issue 7). See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--only", default=",".join(DEFAULT_PARTS),
                   help=f"comma-separated parts: {', '.join(PARTS)}, or all")
    p.add_argument("--messages", type=int, default=10_000,
                   help="messages per drain (single, bulk) and no-op tasks per ceiling")
    p.add_argument("--enqueue-messages", type=int, default=2000,
                   help="messages enqueued one by one in the enqueue part")
    p.add_argument("--e2e-messages", type=int, default=3000,
                   help="messages of the flat-out end-to-end run of the single part")
    p.add_argument("--latency-messages", type=int, default=3000,
                   help="messages per drain with the slow gateway")
    p.add_argument("--latency-ms", type=float, default=100.0, help="the slow gateway's latency")
    p.add_argument("--concurrency", default="16",
                   help="worker concurrency; a comma-separated list repeats the parts "
                        "(e.g. 8,16,32)")
    p.add_argument("-P", "--pool", default="threads", help="Celery pool: threads, prefork, solo…")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every worker and the producer (repeatable), "
                        "e.g. FIBOSMS_BULK_BATCH_SIZE=100")
    p.add_argument("--redis-db", type=int, default=None,
                   help="Redis database number (emptied); default: the first free one from 15 "
                        "down, claimed like the test suite claims its own")
    p.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="where to drop and create the bench database")
    p.add_argument("--database", default="fibosms_bench", help="dropped and created afresh")
    p.add_argument("--gateway-processes", type=int, default=os.cpu_count() or 2)
    p.add_argument("--loadgen-seconds", type=float, default=3.0)
    p.add_argument("--no-e2e", dest="e2e", action="store_false",
                   help="skip the end-to-end (worker running while enqueuing) runs of 'single'")
    p.add_argument("--paced-seconds", type=float, default=15.0,
                   help="length of the paced end-to-end run (latency at a sustainable rate)")
    p.add_argument("--paced-rate", type=float, default=None,
                   help="messages/s of the paced run (default: 0.8 × the measured drain rate)")
    p.add_argument("--noop-events-off", action="store_true",
                   help="also measure the no-op ceiling with task events off, and the bulk "
                        "part again with events off against it")
    p.add_argument("--rate-limit", type=float, default=50.0,
                   help="FIBOSMS_RATE_LIMIT in the ratelimit part")
    p.add_argument("--ratelimit-seconds", type=float, default=60.0)
    p.add_argument("--ratelimit-workers", type=int, default=4,
                   help="separate worker processes (each -P/-c as given) in the ratelimit part")
    p.add_argument("--priority-bulk", type=int, default=20_000)
    p.add_argument("--priority-seconds", type=float, default=20.0)
    p.add_argument("--priority-concurrency", type=int, default=8,
                   help="-c of each priority worker (the README's production example: 8)")
    p.add_argument("--priority-layout", choices=("split", "shared", "both"), default="split",
                   help="split: -Q urgent + -Q default,bulk (README); shared: one worker on all")
    p.add_argument("--profile", default="",
                   help="py-spy the worker during these drains: single, bulk, latency-single, "
                        "latency-bulk (comma-separated; needs root or ptrace rights)")
    p.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: only samples holding the GIL (what serializes threads)")
    p.add_argument("--floor-turns", type=int, default=9,
                   help="alternating turns of the bare loops and enqueue_sms (floor part)")
    p.add_argument("--floor-messages", type=int, default=300,
                   help="messages per turn of the floor part (short turns: the machine's "
                        "other load then weighs on every loop alike)")
    p.add_argument("--cli-runs", type=int, default=20, help="runs of each command (cli part)")
    p.add_argument("--stall-seconds", type=float, default=30.0,
                   help="give up when no message finishes for this long")
    p.add_argument("--part-timeout", type=float, default=600.0, help="longest wait of one drain")
    p.add_argument("--log-level", default="INFO",
                   help="FIBOSMS_LOG_LEVEL of the workers (INFO, as in production)")
    p.add_argument("--out", type=Path, default=None,
                   help="logs, profiles and results.json (default /tmp/fibosms-bench/<time>)")
    p.add_argument("--json", dest="as_json", action="store_true",
                   help="print one JSON document with every number on stdout (table on stderr)")
    a = p.parse_args(argv)

    parts = tuple(x.strip() for x in a.only.split(",") if x.strip())
    if parts == ("all",):
        parts = PARTS
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"--only: unknown part(s) {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    extra: dict[str, str] = {}
    for item in a.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--env wants KEY=VALUE, got {item!r}")
        extra[key.strip()] = value
    for name in URL_VARS:
        if name in extra:
            try:
                require_loopback_url(name, extra[name])
            except BenchError as exc:
                p.error(str(exc))
    if a.redis_db is not None and not 0 <= a.redis_db <= 15:
        p.error("--redis-db must be 0–15")
    host = urlsplit(a.pg_admin_url).hostname
    if not is_loopback_host(host):
        p.error("--pg-admin-url must point at 127.0.0.1")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = a.out or Path(tempfile.gettempdir()) / "fibosms-bench" / stamp
    return Options(
        parts=parts, messages=a.messages, latency_messages=a.latency_messages,
        enqueue_messages=a.enqueue_messages, e2e_messages=a.e2e_messages,
        latency_ms=a.latency_ms, concurrency=[int(x) for x in a.concurrency.split(",") if x],
        pool=a.pool, extra_env=extra, redis_db=a.redis_db, pg_admin_url=a.pg_admin_url,
        database=a.database, gateway_processes=a.gateway_processes,
        loadgen_seconds=a.loadgen_seconds, paced_seconds=a.paced_seconds,
        paced_rate=a.paced_rate, noop_events_off=a.noop_events_off, e2e=a.e2e,
        rate_limit=a.rate_limit, ratelimit_seconds=a.ratelimit_seconds,
        ratelimit_workers=a.ratelimit_workers, priority_bulk=a.priority_bulk,
        priority_seconds=a.priority_seconds, priority_layout=a.priority_layout,
        priority_concurrency=a.priority_concurrency,
        profile=tuple(x.strip() for x in a.profile.split(",") if x.strip()),
        profile_gil=a.profile_gil, floor_turns=a.floor_turns,
        floor_messages=a.floor_messages, cli_runs=a.cli_runs,
        stall_seconds=a.stall_seconds, part_timeout=a.part_timeout,
        log_level=a.log_level.upper(), out_dir=out, as_json=a.as_json,
    )


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM / SIGHUP end the run through the same clean-up as Ctrl-C."""

    def raise_interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    import celery

    meta: dict[str, Any] = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "git": _git(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "pool": opts.pool,
        "concurrency": opts.concurrency,
        "parts": list(opts.parts),
        "messages": opts.messages,
        "extra_env": opts.extra_env,
        "loadavg_start": loadavg(),
        "out_dir": str(opts.out_dir),
    }
    harness = Harness(opts)
    code = 0
    started = time.monotonic()
    with _terminate_cleanly():
        try:
            harness.setup()
            meta["gateway"] = harness.gateway.info
            meta["redis_db"] = harness.redis_db
            harness.run()
        except BenchError as exc:
            log(f"error: {exc}")
            meta["error"] = str(exc)
            code = 1
        except KeyboardInterrupt:
            log("interrupted; stopping every process started")
            meta["error"] = "interrupted"
            code = 130
        finally:
            harness.close()
    meta["loadavg_end"] = loadavg()
    meta["seconds"] = time.monotonic() - started
    table = render_table(harness.rows, meta)
    doc = {"meta": meta, "rows": [r.__dict__ for r in harness.rows], **harness.results}
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    (opts.out_dir / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    (opts.out_dir / "table.txt").write_text(table + "\n")
    profiles = harness.results.get("profiles", {})
    if opts.as_json:
        print(table, file=sys.stderr)
        print(json.dumps(doc, default=str))
    else:
        print(table)
        for label in profiles:
            print()
            print(f"[profile: {label}]")
            print((opts.out_dir / f"profile-{label}.txt").read_text().rstrip())
    log(f"done in {meta['seconds']:.0f} s; results in {opts.out_dir}/results.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
