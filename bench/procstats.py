"""CPU and memory of the processes a benchmark phase involves (psutil).

A :class:`CpuGroup` finds its processes with a callable and remembers each one's last CPU
time, so the CPU of a process that exits between two readings is not lost. A
:class:`TreeWatch` samples a process tree in a thread for its peak resident memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants that are alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(proc: psutil.Process) -> tuple[float, float] | None:
    """(user, system) CPU seconds of ``proc``; None once it is gone."""
    try:
        t = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return float(t.user), float(t.system)


@dataclass
class CpuGroup:
    """A named set of processes; :meth:`total` is their CPU seconds so far (user + system)."""

    name: str
    find: Callable[[], Iterable[psutil.Process]]
    last: dict[tuple[int, float], tuple[float, float]] = field(default_factory=dict)

    def refresh(self) -> float:
        """Read every process now; the group's CPU seconds so far (user + system)."""
        for proc in self.find():
            used = cpu_seconds(proc)
            if used is not None:
                try:
                    key = (proc.pid, proc.create_time())
                except psutil.Error:
                    continue
                self.last[key] = used
        return sum(u + s for u, s in self.last.values())

    def system_seconds(self) -> float:
        """The kernel's share of :meth:`refresh`'s total, as of the last reading."""
        return sum(s for _, s in self.last.values())


def postgres_backends(database: str) -> list[psutil.Process]:
    """PostgreSQL backends connected to ``database`` (their process title names it)."""
    found = []
    needle = f" {database} "
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] != "postgres":
                continue
            title = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if needle in f" {title} ":
            found.append(proc)
    return found


def by_name(*names: str, exclude_cmdline: str | None = None) -> Callable[[], list[psutil.Process]]:
    def find() -> list[psutil.Process]:
        out = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                name = proc.info["name"] or ""
                if not any(name.startswith(n) for n in names):
                    continue
                if exclude_cmdline and exclude_cmdline in " ".join(proc.info["cmdline"] or []):
                    continue
            except psutil.Error:
                continue
            out.append(proc)
        return out

    return find


def system_busy_seconds() -> float:
    """CPU seconds spent not idle by the whole machine (all cores) since boot."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    return float(total - idle)


class TreeWatch(threading.Thread):
    """Samples the process trees under ``pids``: peak resident memory, CPU seconds."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        super().__init__(name="tree-watch", daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak_rss = 0
        self.cpu = CpuGroup("workers", self._procs)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def _procs(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self.pids():
            out.extend(tree(pid))
        return out

    def sample(self) -> float:
        """Read now; returns the CPU seconds so far."""
        with self._lock:
            rss = 0
            for proc in self._procs():
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            return self.cpu.refresh()

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_rss = 0

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class Phase:
    """CPU seconds per group and wall time between :meth:`start` and :meth:`end`."""

    groups: list[CpuGroup]
    started: float = 0.0
    wall: float = 0.0
    begin: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    #: the kernel's part of ``used`` (system calls, context switches, page faults)
    used_system: dict[str, float] = field(default_factory=dict)
    begin_system: dict[str, float] = field(default_factory=dict)
    system_begin: float = 0.0
    system_used: float = 0.0

    def start(self) -> None:
        self.begin = {g.name: g.refresh() for g in self.groups}
        self.begin_system = {g.name: g.system_seconds() for g in self.groups}
        self.system_begin = system_busy_seconds()
        self.started = time.monotonic()

    def end(self) -> None:
        self.wall = time.monotonic() - self.started
        self.used = {g.name: g.refresh() - self.begin.get(g.name, 0.0) for g in self.groups}
        self.used_system = {g.name: g.system_seconds() - self.begin_system.get(g.name, 0.0)
                            for g in self.groups}
        self.system_used = system_busy_seconds() - self.system_begin
