"""A multi-host test bed on one machine: network namespaces joined by veth pairs.

Each "host" is a network namespace with one interface, plugged into a bridge that lives in
a switch namespace of its own. The test process itself is the producer host: one veth pair
reaches from the machine's namespace into the switch, with an address of the bed's own.
Every address is in a private /24 picked at random among those the machine has no route
to, and assigned only to the bed's own veth interfaces.

- the service host runs PostgreSQL and Redis bound to its veth address only;
- worker hosts run real Celery workers (``ip netns exec NS python -m fibosms.cli worker``);
- the sandbox gateway listens on the producer host's address, reachable from all.

:meth:`NetBed.cut` takes a host's link down at the switch (its packets are dropped, as in
a real partition: nothing fails fast, TCP retransmits), :meth:`NetBed.heal` brings it
back, :meth:`NetBed.kill_host` kills every process in a namespace. Everything is torn down
by :meth:`NetBed.destroy`, on success or failure. Needs root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from tests.fixtures.services import require
from tests.fixtures.stack import ROOT, Stack, wait_for
from tests.system.infra import pg_bindir


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def namespaces_possible() -> tuple[bool, str]:
    """Whether this process may create network namespaces (and why not)."""
    if shutil.which("ip") is None:
        return False, "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    probe = f"fbprobe{uuid.uuid4().hex[:6]}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return False, f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route of the machine covers or overlaps."""
    routes = _ip("-4", "route", "show", "table", "all").stdout
    taken = []
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "local", "broadcast"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(first, strict=False))
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(200, 208)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise AssertionError("no free /24 in 10.200.0.0/13")


class NetBed:
    """The switch, the producer's link, the service host and ``workers`` worker hosts."""

    def __init__(self, workers: int) -> None:
        self.tag = uuid.uuid4().hex[:4]
        self.net = _free_subnet()
        hosts = list(self.net.hosts())
        self.switch = f"fb{self.tag}sw"
        self.producer_addr = str(hosts[0])
        self.service = f"fb{self.tag}svc"
        self.service_addr = str(hosts[1])
        self.workers = [f"fb{self.tag}w{i}" for i in range(1, workers + 1)]
        self.worker_addrs = {ns: str(hosts[10 + i]) for i, ns in enumerate(self.workers)}
        #: namespace → the switch-side end of its veth pair
        self.ports: dict[str, str] = {}
        self._producer_if = f"fb{self.tag}p"
        self._made: list[str] = []

    # -- building ----------------------------------------------------------------------

    def create(self) -> NetBed:
        try:
            _ip("netns", "add", self.switch)
            self._made.append(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            _ip("-n", self.switch, "link", "set", "lo", "up")
            # the producer host: this process's own namespace, one veth of the bed's own
            _ip("link", "add", self._producer_if, "type", "veth", "peer", "name",
                f"fb{self.tag}ps")
            self._plug(f"fb{self.tag}ps")
            _ip("addr", "add", f"{self.producer_addr}/{self.net.prefixlen}",
                "dev", self._producer_if)
            _ip("link", "set", self._producer_if, "up")
            self._host(self.service, self.service_addr, "s")
            for i, ns in enumerate(self.workers, start=1):
                self._host(ns, self.worker_addrs[ns], str(i))
        except BaseException:
            self.destroy()
            raise
        return self

    def _plug(self, port: str) -> None:
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")

    def _host(self, ns: str, addr: str, short: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)
        inside, port = f"fb{self.tag}{short}h", f"fb{self.tag}{short}s"
        _ip("link", "add", inside, "type", "veth", "peer", "name", port)
        _ip("link", "set", inside, "netns", ns)
        self._plug(port)
        self.ports[ns] = port
        _ip("-n", ns, "addr", "add", f"{addr}/{self.net.prefixlen}", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def exec_prefix(self, ns: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", ns)

    # -- faults --------------------------------------------------------------------------

    def cut(self, ns: str) -> None:
        """The host's link goes down at the switch: its packets are dropped, both ways."""
        _ip("-n", self.switch, "link", "set", self.ports[ns], "down")

    def heal(self, ns: str) -> None:
        _ip("-n", self.switch, "link", "set", self.ports[ns], "up")

    def pids(self, ns: str) -> list[int]:
        out = _ip("netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_host(self, ns: str) -> int:
        """SIGKILL every process in the namespace, as when the machine loses power."""
        pids = self.pids(ns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    # -- tearing down ----------------------------------------------------------------------

    def destroy(self) -> None:
        for ns in reversed(self._made):
            for _ in range(20):
                if not self.pids(ns):
                    break
                self.kill_host(ns)
                time.sleep(0.2)
            _ip("netns", "del", ns, check=False)
        self._made.clear()
        # deleting the switch took the producer link's peer, and with it the link
        _ip("link", "del", self._producer_if, check=False)


class ServiceHost:
    """PostgreSQL and Redis in the service namespace, bound to its veth address only."""

    PG_PORT = 5432
    REDIS_PORT = 6379

    def __init__(self, bed: NetBed) -> None:
        bindir = pg_bindir()
        require(bindir is not None, "PostgreSQL's server binaries are not installed")
        require(shutil.which("redis-server") is not None, "redis-server is not installed")
        assert bindir is not None
        self.bed = bed
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="fibosms-bed-"))
        self.data = self.root / "pg"
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.pg_running = False
        self._user = pwd.getpwnam("postgres")
        os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    @property
    def addr(self) -> str:
        return self.bed.service_addr

    @property
    def pg_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.addr}:{self.PG_PORT}/fibosms"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.addr}:{self.REDIS_PORT}/0"

    def _pg(self, *args: str, inside: bool = False) -> None:
        cmd = [*(self.bed.exec_prefix(self.bed.service) if inside else ()), "runuser", "-u",
               "postgres", "--", str(self.bindir / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.root / "pg.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> ServiceHost:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E",
                 "UTF8", "--no-sync", "--locale=C")
        with open(self.data / "pg_hba.conf", "a") as hba:  # the bed's hosts, and no other
            hba.write(f"host all all {self.bed.net} trust\n")
        options = (f"-p {self.PG_PORT} -k {self.root} -c listen_addresses={self.addr} "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=200")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "pg.log"), "-o", options,
                 "-w", "-t", "30", "start", inside=True)
        self.pg_running = True
        admin = create_engine(
            f"postgresql+psycopg://postgres@{self.addr}:{self.PG_PORT}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE fibosms"))
        admin.dispose()
        with open(self.root / "redis.log", "ab") as out:
            self.redis_proc = subprocess.Popen(
                [*self.bed.exec_prefix(self.bed.service), "redis-server", "--port",
                 str(self.REDIS_PORT), "--bind", self.addr, "--save", "", "--appendonly", "no",
                 "--protected-mode", "no", "--dir", str(self.root)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

        def redis_up() -> bool:
            try:
                with redis.Redis(host=self.addr, port=self.REDIS_PORT, socket_timeout=1) as c:
                    return bool(c.ping())
            except redis.RedisError:
                return False

        wait_for(redis_up, timeout=10, every=0.1)
        return self

    def stop(self) -> None:
        if self.pg_running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.pg_running = False
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.redis_proc.pid, signal.SIGKILL)
            self.redis_proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_worker_in(
    stack: Stack, bed: NetBed, ns: str, *extra: str, concurrency: int = 4
) -> Path:
    """A real Celery worker on worker host ``ns``; returns its log once it is ready."""
    log = stack.tmp / f"{ns}-{len(stack.logs)}.log"
    args = [
        *bed.exec_prefix(ns), sys.executable, "-m", "fibosms.cli", "worker",
        "--pool", "threads", "--concurrency", str(concurrency), "--loglevel", "INFO",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "--hostname", f"{ns}@{ns}", *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **stack.env}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    stack.workers.append(proc)
    stack.logs.append(log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}:\n{log.read_text()}")
        return "ready." in log.read_text(errors="replace")

    wait_for(ready, timeout=40)
    return log


@contextlib.contextmanager
def netbed(workers: int) -> Iterator[NetBed]:
    """A bed with ``workers`` worker hosts, torn down afterwards; skipped where namespaces
    cannot be made (failing under CI=true)."""
    ok, why = namespaces_possible()
    require(ok, f"cannot build the multi-host test bed: {why}")
    bed = NetBed(workers).create()
    try:
        yield bed
    finally:
        bed.destroy()
