"""How many gateway calls one worker process keeps in flight: enough to cover the gateway's
latency, no more.

A worker's threads share one core. Calls that each take a millisecond need two or three in
flight to keep that core busy; more threads in the middle of a call only add switching (a
gathered run of 16 calls at once, against a fast gateway, cost 2.9 ms of CPU a message with 32
call threads and 2.4 ms with 4). Calls that take 100 ms need dozens in flight. So the window
follows the calls' latency (Little's law): in flight = latency / CPU a call + 1, between
:data:`FLOOR` and the process's limit (``FIBOSMS_BATCH_CONCURRENCY``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: calls always allowed in flight, however fast the gateway answers
FLOOR = 2
#: the worker CPU one message costs around its call, in seconds (measured: 2.4-3 ms)
CPU_PER_CALL_SECONDS = 0.0025
#: weight of the newest call in the latency average
WEIGHT = 0.2


class CallWindow:
    """A semaphore whose size follows the average call latency."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._cond = threading.Condition()
        self._in_flight = 0
        #: no call seen yet: the narrowest window until the first call shows the pace
        self._latency: float | None = None

    def size(self) -> int:
        """Calls allowed in flight now."""
        if self._latency is None:
            return min(FLOOR, self.limit)
        wanted = math.ceil(self._latency / CPU_PER_CALL_SECONDS) + 1
        return max(min(FLOOR, self.limit), min(self.limit, wanted))

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold a place in the window for one call; its duration feeds the average."""
        with self._cond:
            while self._in_flight >= self.size():
                self._cond.wait()
            self._in_flight += 1
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            with self._cond:
                self._in_flight -= 1
                self._latency = (
                    took if self._latency is None
                    else (1 - WEIGHT) * self._latency + WEIGHT * took
                )
                self._cond.notify(max(1, self.size() - self._in_flight))


class NoWindow(CallWindow):
    """No bound: every call goes at once (tests, one-off commands)."""

    def __init__(self) -> None:
        super().__init__(limit=1)

    @contextmanager
    def call(self) -> Iterator[None]:
        yield
