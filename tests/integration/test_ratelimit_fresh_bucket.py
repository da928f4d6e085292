"""The shared rate limit on a bucket Redis does not hold: new, expired, flushed, or lost
in a failover to a replica that had not received it yet."""

from __future__ import annotations

import time

import redis

from worker.ratelimit import BUCKET_KEY, RedisRateLimiter


def test_a_non_urgent_call_on_a_missing_bucket_goes_at_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    # the defaults: a burst of 1, a fifth of it kept free for urgent messages
    limiter = RedisRateLimiter(client, rate=200, capacity=1, reserve=0.2)
    client.delete(BUCKET_KEY)
    started = time.monotonic()
    assert limiter.acquire(1, urgent=False, timeout=2)
    # an idle schedule lets it go now, not after the timeout (it used to wait forever)
    assert time.monotonic() - started < 0.5
    # and the schedule holds: the next ones are spaced, not refused
    assert all(limiter.acquire(1, urgent=False, timeout=2) for _ in range(5))
    client.close()
