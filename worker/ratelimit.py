"""A global rate limit: one token bucket for every worker, with a reserve for urgent messages.

With a Redis broker the bucket lives in Redis and is taken atomically by a Lua script, so
all workers on all machines share it; with the embedded default it is a bucket in this
process. Urgent (otp) messages may take any token; the others leave ``reserve`` tokens in
the bucket, so an OTP does not wait behind a campaign, while a campaign alone still uses
the full rate (the reserve refills at the same rate it is not used).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

from worker.settings import Settings

BUCKET_KEY = "fibosms:ratelimit:bucket"

# KEYS[1] bucket; ARGV: rate (tokens/s), capacity, cost, floor (tokens to leave behind).
# Returns 0 when the tokens were taken, or the milliseconds to wait before trying again.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens - cost >= floor then
  tokens = tokens - cost
else
  wait = math.ceil((cost + floor - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 60000)
return wait
"""


class RateLimiter(Protocol):
    def acquire(self, cost: float, *, urgent: bool, timeout: float) -> bool:
        """Block until ``cost`` tokens are taken (True) or ``timeout`` seconds pass (False)."""
        ...


class NoLimit:
    def acquire(self, cost: float, *, urgent: bool, timeout: float) -> bool:
        return True


class _Bucket:
    """The arithmetic both limiters share: rate, capacity and the urgent floor."""

    def __init__(self, rate: float, capacity: float, reserve: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.reserve_tokens = capacity * reserve

    def floor(self, urgent: bool) -> float:
        return 0.0 if urgent else self.reserve_tokens

    def check(self, cost: float, urgent: bool) -> None:
        if cost > self.capacity - self.floor(urgent):
            raise ValueError(
                f"a cost of {cost} tokens can never fit a bucket of {self.capacity} "
                "(raise FIBOSMS_RATE_BURST or lower the batch size)"
            )


class RedisRateLimiter(_Bucket):
    def __init__(self, client: redis.Redis, rate: float, capacity: float, reserve: float) -> None:
        super().__init__(rate, capacity, reserve)
        self._client = client
        self._take = client.register_script(_TAKE)

    def acquire(self, cost: float, *, urgent: bool, timeout: float) -> bool:
        self.check(cost, urgent)
        deadline = time.monotonic() + timeout
        while True:
            wait_ms = int(
                self._take(
                    keys=[BUCKET_KEY],
                    args=[self.rate, self.capacity, cost, self.floor(urgent)],
                )
            )
            if wait_ms <= 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(wait_ms / 1000, remaining))


class LocalRateLimiter(_Bucket):
    """The same bucket within one process (the embedded default serves one worker)."""

    def __init__(self, rate: float, capacity: float, reserve: float) -> None:
        super().__init__(rate, capacity, reserve)
        self._tokens = capacity
        self._ts = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, cost: float, *, urgent: bool, timeout: float) -> bool:
        self.check(cost, urgent)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._ts) * self.rate)
                self._ts = now
                floor = self.floor(urgent)
                if self._tokens - cost >= floor:
                    self._tokens -= cost
                    return True
                wait = (cost + floor - self._tokens) / self.rate
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(wait, remaining))


def make_limiter(settings: Settings, client: redis.Redis | None) -> RateLimiter:
    """The limiter the settings ask for; ``client`` is the broker's Redis, if it is one."""
    if settings.rate_limit is None:
        return NoLimit()
    if client is not None:
        return RedisRateLimiter(
            client, settings.rate_limit, settings.rate_burst, settings.urgent_reserve
        )
    return LocalRateLimiter(settings.rate_limit, settings.rate_burst, settings.urgent_reserve)
