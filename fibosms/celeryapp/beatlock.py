"""One beat across machines: Celery's file scheduler behind a lock held in Redis.

A second beat started by mistake stands by instead of doubling the schedule, and takes
over when the first one's lock expires. The lock is a plain key (SET NX PX, renewed each
tick), so a Redis flush or restart, which this deployment expects, costs at most one tick:
the holder, or a standby, sets it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler

from fibosms.celeryapp.resources import settings_of
from worker.redisconn import state_client

log = logging.getLogger("fibosms.beat")

LOCK_KEY = "fibosms:beat:lock"
#: seconds a lock outlives its holder's last renewal
LOCK_TTL_SECONDS = 30
#: seconds between ticks at the most, well inside the lock's life
MAX_TICK_SECONDS = 5.0

# renew only a lock we hold
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class LockedScheduler(PersistentScheduler):  # type: ignore[misc]
    """Runs the schedule only while it holds the beat lock in the shared-state Redis
    (FIBOSMS_REDIS_URL, or the broker's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._redis: redis.Redis | None = None
        self._holding: bool | None = None  # unknown until the first tick

    def _client(self) -> redis.Redis:
        if self._redis is None:
            client = state_client(settings_of(self.app))
            if client is None:  # config.build picks this scheduler only with a Redis
                raise redis.ConnectionError("no Redis for the beat lock")
            self._redis = client
        return self._redis

    def hold_lock(self) -> bool:
        """Take or renew the lock; False (and stand by) when another beat holds it."""
        ttl_ms = LOCK_TTL_SECONDS * 1000
        try:
            client = self._client()
            held = bool(client.eval(_RENEW, 1, LOCK_KEY, self._token, ttl_ms))
            if not held:
                held = bool(client.set(LOCK_KEY, self._token, nx=True, px=ttl_ms))
        except redis.RedisError as exc:
            log.warning("beat lock: Redis unavailable (%s); not scheduling", type(exc).__name__)
            held = False
        if held != self._holding:
            state = "holding the lock" if held else "another beat holds the lock; standing by"
            log.warning("beat: %s", state)
            self._holding = held
        return held

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.hold_lock():
            return MAX_TICK_SECONDS
        return min(float(super().tick(*args, **kwargs)), MAX_TICK_SECONDS)

    def close(self) -> None:
        if self._holding is True and self._redis is not None:
            # release only our own lock, so a standby takes over at once
            with contextlib.suppress(redis.RedisError):
                self._redis.eval(
                    "if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) end return 0",
                    1, LOCK_KEY, self._token,
                )
        super().close()
