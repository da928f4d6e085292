"""A circuit breaker in front of the gateway.

After ``threshold`` consecutive transient failures (codes 2, 13, 24, 27, transport errors,
unknown outcomes) the breaker opens: no message calls the gateway for ``cooldown``
seconds, so an outage does not burn every message's attempts. Then one probe is let
through (half-open); its success closes the breaker, its failure opens it again. With a
Redis broker the state is shared by every worker; otherwise it is this process's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import redis

from worker.settings import Settings

log = logging.getLogger("fibosms.breaker")

FAILURES_KEY = "fibosms:breaker:failures"
OPEN_KEY = "fibosms:breaker:open"
PROBE_KEY = "fibosms:breaker:probe"
#: seconds a worker trusts a "closed, no failures" reading before asking Redis again
QUIET_CACHE_SECONDS = 0.5


class Breaker(Protocol):
    def wait_seconds(self) -> float:
        """0 when a call may go ahead now; otherwise seconds until the breaker may allow one."""
        ...

    def success(self) -> None: ...

    def failure(self) -> None: ...


class NoBreaker:
    def wait_seconds(self) -> float:
        return 0.0

    def success(self) -> None:
        pass

    def failure(self) -> None:
        pass


class RedisBreaker:
    """Shared state: a failure counter, an "open" key that expires after the cool-down, and
    a probe key so only one call goes through while half-open."""

    def __init__(self, client: redis.Redis, threshold: int, cooldown: float) -> None:
        self._client = client
        self.threshold = threshold
        self.cooldown_ms = int(cooldown * 1000)
        # a closed breaker with no failures is remembered briefly, so the hot path does not
        # ask Redis twice per message
        self._quiet_until = 0.0
        self._saw_failures = True

    def wait_seconds(self) -> float:
        if time.monotonic() < self._quiet_until:
            return 0.0
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.pttl(OPEN_KEY)
            pipe.get(FAILURES_KEY)
            open_ms, failures = pipe.execute()
            self._saw_failures = failures is not None
            if not self._saw_failures:
                self._quiet_until = time.monotonic() + QUIET_CACHE_SECONDS
            if open_ms is not None and open_ms > 0:
                return float(open_ms) / 1000
            if failures is not None and int(failures) >= self.threshold:
                # half-open: one probe at a time, the others wait a moment
                if self._client.set(PROBE_KEY, "1", nx=True, px=self.cooldown_ms):
                    return 0.0
                return min(1.0, self.cooldown_ms / 1000)
        except redis.RedisError as exc:
            # a breaker that cannot be read must not stop sending
            log.warning("circuit breaker state unavailable (%s)", type(exc).__name__)
        return 0.0

    def success(self) -> None:
        if not self._saw_failures:
            return  # nothing to reset
        try:
            self._saw_failures = False
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(FAILURES_KEY, OPEN_KEY, PROBE_KEY)
            deleted = pipe.execute()[0]
            if deleted:
                log.info("circuit breaker closed: the gateway answers again")
        except redis.RedisError:
            pass

    def failure(self) -> None:
        self._quiet_until = 0.0
        self._saw_failures = True
        try:
            failures = int(self._client.incr(FAILURES_KEY))
            self._client.pexpire(FAILURES_KEY, self.cooldown_ms * 10)
            if failures >= self.threshold:
                self._client.delete(PROBE_KEY)
                if self._client.set(OPEN_KEY, "1", nx=True, px=self.cooldown_ms):
                    log.warning(
                        "circuit breaker open after %d consecutive transient failures: "
                        "no gateway calls for %.0f s",
                        failures,
                        self.cooldown_ms / 1000,
                        extra={"breaker": "open", "failures": failures},
                    )
        except redis.RedisError:
            pass


class LocalBreaker:
    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def wait_seconds(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                return self._open_until - now
            if self._failures >= self.threshold:
                if self._probing:
                    return min(1.0, self.cooldown)
                self._probing = True
            return 0.0

    def success(self) -> None:
        with self._lock:
            if self._failures >= self.threshold:
                log.info("circuit breaker closed: the gateway answers again")
            self._failures = 0
            self._probing = False
            self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.threshold:
                self._open_until = time.monotonic() + self.cooldown
                log.warning(
                    "circuit breaker open after %d consecutive transient failures: "
                    "no gateway calls for %.0f s",
                    self._failures,
                    self.cooldown,
                    extra={"breaker": "open", "failures": self._failures},
                )


def make_breaker(settings: Settings, client: redis.Redis | None) -> Breaker:
    if settings.breaker_threshold == 0:
        return NoBreaker()
    if client is not None:
        return RedisBreaker(client, settings.breaker_threshold, settings.breaker_cooldown_seconds)
    return LocalBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds)


def peek(client: redis.Redis) -> tuple[float, int]:
    """The shared breaker as it stands, changing nothing (the console shows it): seconds
    it stays open (0: closed or half-open) and the consecutive failures counted."""
    pipe = client.pipeline(transaction=False)
    pipe.pttl(OPEN_KEY)
    pipe.get(FAILURES_KEY)
    open_ms, failures = pipe.execute()
    seconds = float(open_ms) / 1000 if open_ms is not None and open_ms > 0 else 0.0
    return seconds, int(failures or 0)
