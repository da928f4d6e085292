"""Real processes for the system tier: a private Redis, a private PostgreSQL cluster, beat.

Scenarios that stop or flush a service use one of their own, on a free port, so the
machine's shared Redis and PostgreSQL are never touched. Every process started here is
stopped by the fixture that started it, on success or failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, func, select, text

from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT, Stack, wait_for
from worker.errors import ValidationError
from worker.ledger.db import Database
from worker.ledger.models import Message

#: 127.0.0.1 only: no traffic leaves the machine
HOST = "127.0.0.1"


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 15.0
) -> None:
    """Signal a process's group (they are started in their own session); SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# -- Redis -------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own: nothing on disk, stopped and started at will."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def start(self) -> PrivateRedis:
        args = [
            "redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
            "--logfile", str(self.log),
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(self.ping, timeout=10, every=0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None

    def flushall(self) -> None:
        with self.client() as c:
            c.flushall()


# -- PostgreSQL --------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), or pg_config's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temporary directory, on a free port.

    As root, the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fibosms-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.sockets.mkdir()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/fibosms"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise AssertionError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n"
                f"{done.stderr}\n{log}"
            )

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        self.start()
        admin = create_engine(
            f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE fibosms"))
        admin.dispose()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses={HOST} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "30", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is cut, as in a restart by an operator or a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def destroy(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        except AssertionError:
            # pg_ctl could not stop it: end the postmaster (its pid heads postmaster.pid)
            pidfile = self.data / "postmaster.pid"
            if pidfile.exists():
                with contextlib.suppress(ValueError, ProcessLookupError, IndexError):
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- beat, and the ledger as seen by a test ---------------------------------------------


def start_beat(stack: Stack, name: str = "beat") -> tuple[subprocess.Popen[bytes], Path]:
    """A real ``fibosms beat`` process with the stack's environment; its log file."""
    log = stack.tmp / f"{name}.log"
    env = {**os.environ, **stack.env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fibosms.cli", "beat", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"beat exited {proc.returncode}:\n{log.read_text()}")
        return "beat: Starting" in log.read_text(errors="replace")

    wait_for(started, timeout=30)
    return proc, log


def count_by_status(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        rows = session.execute(select(Message.status, func.count()).group_by(Message.status))
        return {status: n for status, n in rows}


def rows(db: Database, *columns: Any) -> list[Any]:
    with db.sessions() as session:
        return list(session.execute(select(*columns)))


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["seconds"]``."""
    out: dict[str, float] = {}
    start = time.monotonic()
    try:
        yield out
    finally:
        out["seconds"] = time.monotonic() - start


def wait_until_final(
    db: Database, expected: dict[str, int], *, timeout: float, what: str
) -> float:
    """Wait until the ledger's counts by status are ``expected``; the seconds it took.

    On time-out the failure names the scenario and shows the rows that are not there yet.
    """
    start = time.monotonic()
    deadline = start + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = count_by_status(db)
        if counts == expected:
            return time.monotonic() - start
        time.sleep(0.5)
    with db.sessions() as session:
        stuck = session.execute(
            select(
                Message.id, Message.status, Message.attempts, Message.ambiguous_attempts,
                Message.next_attempt_at, Message.published_at, Message.claimed_at,
                Message.last_error,
            )
            .where(Message.status.not_in(list(expected)))
            .limit(8)
        ).all()
        if not stuck:
            stuck = session.execute(
                select(Message.id, Message.status, Message.attempts, Message.published_at,
                       Message.next_attempt_at)
                .where(Message.status != "sent")
                .limit(8)
            ).all()
    raise AssertionError(
        f"{what}: after {timeout:.0f} s the ledger holds {counts}, expected {expected}; "
        f"e.g. {[tuple(r) for r in stuck]}"
    )


@dataclass
class Enqueued:
    at: float
    latency: float
    message_id: int | None
    error: str | None = None
    text: str = ""


class Producers:
    """Threads that enqueue one message each every ``every`` seconds, timing each call."""

    def __init__(self, stack: Stack, threads: int, every: float, prefix: str = "0914") -> None:
        self.stack = stack
        self.prefix = prefix
        self.every = every
        self.results: list[Enqueued] = []
        self.texts: dict[int, str] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set() and i < 10_000:
            text = f"outage test message {self.prefix}-{n}-{i:05d}"
            t0 = time.monotonic()
            try:
                mid: int | None = self.stack.producer.enqueue_sms(
                    f"{self.prefix}{n:02d}{i:04d}", text
                )
                error = None
            except ValidationError:
                raise
            except Exception as exc:  # recorded: the test asserts there are none
                mid, error = None, f"{type(exc).__name__}: {exc}"
            latency = time.monotonic() - t0
            with self._lock:
                self.results.append(Enqueued(t0, latency, mid, error, text))
                if mid is not None:
                    self.texts[mid] = text
            i += 1
            self._stop.wait(max(0.0, self.every - latency))

    def __enter__(self) -> Producers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


class ErrorPageServer:
    """What a reverse proxy answers when the service behind it is down: every request gets
    an HTML error page with ``status``. Listens on a given port (the sandbox's, stopped)."""

    def __init__(self, port: int, status: int = 502) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from worker.sandbox.server import render_error_page

        body = render_error_page(status).encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.calls += 1
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.calls = 0

    def __enter__(self) -> ErrorPageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
