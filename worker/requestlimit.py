"""Per-caller request limits for the HTTP API: answer at once, never wait.

A GCRA schedule per caller (an API key), as :mod:`worker.ratelimit` keeps for the gateway,
but asked once: the answer is "go" (0) or the seconds until a request would be let
through. With Redis the schedules live there, so every API process on every machine shares
one limit per key; without Redis they live in this process.

The burst is one second's worth of requests (at least one), so a caller spending its
rate evenly is never refused and a burst of ``rate`` requests after a quiet second passes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

import redis

log = logging.getLogger("fibosms.api")

#: Redis key prefix; the caller's id follows
KEY_PREFIX = "fibosms:api:rate:"

# KEYS[1] the caller's TAT (microseconds); ARGV: interval (microseconds per request), burst.
# Returns 0 when the request may go (and takes its slot), else microseconds to wait.
_TRY = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allowance = (burst - 1) * interval
if tat - now > allowance then
  return math.ceil(tat - now - allowance)
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
"""


class RequestLimiter(Protocol):
    def try_take(self, caller: str) -> float:
        """Take one request for ``caller``: 0 when it may go, else seconds to wait."""
        ...


class Unlimited:
    def try_take(self, caller: str) -> float:
        return 0.0


def burst_for(rate: float) -> int:
    """Requests that may come back to back: one second's worth, at least one."""
    return max(1, math.floor(rate))


class LocalRequestLimiter:
    """The schedules in this process (no Redis): one limit per key per process."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.burst = burst_for(rate)
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def try_take(self, caller: str) -> float:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(caller, now), now)
            allowance = (self.burst - 1) * self.interval
            if tat - now > allowance:
                return tat - now - allowance
            self._tat[caller] = tat + self.interval
            return 0.0


class RedisRequestLimiter:
    """The schedules in Redis, shared by every API process."""

    def __init__(self, client: redis.Redis, rate: float) -> None:
        self.client = client
        self.interval_us = 1_000_000.0 / rate
        self.burst = burst_for(rate)
        self._script = client.register_script(_TRY)

    def try_take(self, caller: str) -> float:
        """As the protocol says; with Redis unreachable the request goes (fail open): the
        ledger, not Redis, decides whether a message is accepted, and a broker outage must
        not stop the API from accepting what the sweep will publish later."""
        try:
            wait_us = self._script(
                keys=[KEY_PREFIX + caller], args=[self.interval_us, self.burst]
            )
        except redis.RedisError as exc:
            log.warning("request limit not applied: Redis is unavailable (%s)",
                        type(exc).__name__)
            return 0.0
        return float(wait_us) / 1_000_000.0


def make_request_limiter(rate: float | None, client: redis.Redis | None) -> RequestLimiter:
    """The limiter for ``FIBOSMS_API_RATE_LIMIT`` (None: no limit)."""
    if rate is None:
        return Unlimited()
    if client is not None:
        return RedisRequestLimiter(client, rate)
    return LocalRequestLimiter(rate)
