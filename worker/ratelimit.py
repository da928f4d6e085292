"""A global rate limit for every worker, with a head start for urgent messages.

A token bucket kept as GCRA: one schedule time instead of a token count. With a Redis
broker it lives in Redis and is taken atomically by a Lua script, so all workers on all
machines share it; with the embedded default it lives in this process.

``FIBOSMS_RATE_BURST`` (tokens, default 1) is how far calls may bunch up. At 1 calls are
spaced one interval (1 / ``FIBOSMS_RATE_LIMIT``) apart, so no one-second window holds more
than the limit; a burst of B lets up to B - 1 more through in some window. Non-urgent
messages keep ``reserve`` of the burst free: with a burst of 1 that means they wait that
fraction of an interval longer than an OTP, so a waiting OTP takes the next slot, and a
cost that exceeds the burst is not refused but waits for an idle schedule.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from worker.settings import Settings

BUCKET_KEY = "fibosms:ratelimit:gcra"

# GCRA (the generic cell rate algorithm): the bucket is one number, the theoretical arrival
# time TAT (microseconds) at which the schedule is free again. A call of cost c is allowed
# when TAT - now <= (capacity - c - floor) * interval, and moves TAT to max(TAT, now) +
# c * interval. With a capacity of one token, calls are at least one interval apart, so no
# one-second window, wherever it starts, holds more than the rate.
# KEYS[1] the TAT; ARGV: interval (microseconds per token), capacity, cost, floor.
# Returns 0 when the call may go, or the microseconds to wait before asking again.
_TAKE = """
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- no schedule (new, expired, flushed, lost in a failover): idle since long ago, so a
-- non-urgent call, which needs the schedule free of its reserve, is not refused forever
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local allowance = (capacity - cost - floor) * interval
if tat - now > allowance then
  return math.ceil(tat - now - allowance)
end
-- with no room for the reserve (a burst of one), a non-urgent call waits up to floor
-- tokens past the schedule for the reserve's sake; the schedule goes on from where that
-- wait began, so it does not stretch every interval when no urgent call is waiting
local shift = 0
if allowance < 0 then shift = math.min(floor * interval, -allowance) end
tat = math.max(tat, now - shift) + cost * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
return 0
"""


#: how a caller waits between two asks: time.sleep, or a burst moving its calls along
Sleep = Callable[[float], object]


class RateLimiter(Protocol):
    def acquire(
        self, cost: float, *, urgent: bool, timeout: float, sleep: Sleep = time.sleep
    ) -> bool:
        """Block until ``cost`` tokens are taken (True) or ``timeout`` seconds pass (False),
        waiting between asks with ``sleep(seconds)``."""
        ...


class NoLimit:
    def acquire(
        self, cost: float, *, urgent: bool, timeout: float, sleep: Sleep = time.sleep
    ) -> bool:
        return True


class _Schedule:
    """The arithmetic both limiters share: the interval, the capacity, the urgent floor."""

    def __init__(self, rate: float, capacity: float, reserve: float) -> None:
        self.rate = rate
        #: seconds one token stands for
        self.interval = 1.0 / rate
        self.capacity = capacity
        self.reserve_tokens = capacity * reserve

    def floor(self, urgent: bool) -> float:
        return 0.0 if urgent else self.reserve_tokens

    def shift(self, cost: float, urgent: bool) -> float:
        """Seconds of a call's wait owed to the reserve alone, when the burst leaves it no
        room: the schedule goes on from before them."""
        allowance = (self.capacity - cost - self.floor(urgent)) * self.interval
        return min(self.floor(urgent) * self.interval, -allowance) if allowance < 0 else 0.0

    def wait(self, tat: float, now: float, cost: float, urgent: bool) -> float:
        """Seconds until a call of ``cost`` may go, given the schedule's ``tat``; 0: now."""
        allowance = (self.capacity - cost - self.floor(urgent)) * self.interval
        return max(0.0, tat - now - allowance)


class RedisRateLimiter(_Schedule):
    """One schedule in Redis for every worker on every machine."""

    def __init__(self, client: redis.Redis, rate: float, capacity: float, reserve: float) -> None:
        super().__init__(rate, capacity, reserve)
        self._client = client
        self._take = client.register_script(_TAKE)

    def acquire(
        self, cost: float, *, urgent: bool, timeout: float, sleep: Sleep = time.sleep
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            wait_us = int(
                self._take(
                    keys=[BUCKET_KEY],
                    args=[self.interval * 1e6, self.capacity, cost, self.floor(urgent)],
                )
            )
            if wait_us <= 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sleep(min(wait_us / 1e6, remaining))


class LocalRateLimiter(_Schedule):
    """The same schedule within one process (the embedded default serves one worker)."""

    def __init__(self, rate: float, capacity: float, reserve: float) -> None:
        super().__init__(rate, capacity, reserve)
        self._tat = time.monotonic()
        self._lock = threading.Lock()

    def acquire(
        self, cost: float, *, urgent: bool, timeout: float, sleep: Sleep = time.sleep
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                now = time.monotonic()
                wait = self.wait(self._tat, now, cost, urgent)
                if wait <= 0:
                    # as in the Redis script: the reserve's wait does not stretch the schedule
                    self._tat = max(self._tat, now - self.shift(cost, urgent)) + (
                        cost * self.interval
                    )
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sleep(min(wait, remaining))


def make_limiter(settings: Settings, client: redis.Redis | None) -> RateLimiter:
    """The limiter the settings ask for; ``client`` is the broker's Redis, if it is one."""
    if settings.rate_limit is None:
        return NoLimit()
    if client is not None:
        return RedisRateLimiter(
            client, settings.rate_limit, settings.rate_burst, settings.urgent_reserve
        )
    return LocalRateLimiter(settings.rate_limit, settings.rate_burst, settings.urgent_reserve)
