"""Small helpers shared by the bench scripts: loopback checks, bounded waits, statistics."""

from __future__ import annotations

import ipaddress
import math
import socket
import time
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and where to look."""


def is_loopback_host(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: the only addresses the bench may talk to."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback_url(name: str, url: str) -> None:
    """Refuse any URL whose host is not on this machine's loopback."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme.startswith("sqlite") or parts.scheme.startswith("sqla+sqlite"):
        return
    if not is_loopback_host(host):
        raise BenchError(
            f"{name} must point at 127.0.0.1 (the bench never sends traffic elsewhere), "
            f"got host {host!r}"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    every: float = 0.05,
    hint: str = "",
) -> T:
    """Poll ``check`` until it returns something truthy; BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = f"; {hint}" if hint else ""
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(every)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100), nearest-rank on sorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def sliding_max(counts: Sequence[int], width: int) -> int:
    """The largest sum of ``width`` consecutive entries (the whole sum when shorter)."""
    if not counts:
        return 0
    if len(counts) <= width:
        return sum(counts)
    window = sum(counts[:width])
    best = window
    for i in range(width, len(counts)):
        window += counts[i] - counts[i - width]
        best = max(best, window)
    return best
