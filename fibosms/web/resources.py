"""What one API process holds: made when the app starts (its lifespan), closed when it stops.

Nothing here runs at import: :func:`open_resources` is called by the app's lifespan, after
uvicorn has forked its worker processes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis

from producer.enqueue import Producer
from worker.clock import now as utcnow
from worker.ledger.apikeys import KeyRecord, hash_token, touch_key, verify_token
from worker.ledger.db import Database
from worker.publish import Publishes
from worker.requestlimit import RequestLimiter, make_request_limiter
from worker.settings import Settings

#: seconds a verified key is trusted without asking the ledger again; a revoked key is
#: refused by every API process within this time
KEY_CACHE_SECONDS = 2.0
#: seconds a Redis call of the request limiter may take
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass
class KeyCache:
    """Verified tokens by hash, each trusted for ``ttl`` seconds; also records last use."""

    db: Database
    ttl: float = KEY_CACHE_SECONDS
    _entries: dict[str, tuple[float, KeyRecord | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, token: str) -> tuple[bool, KeyRecord | None]:
        """(True, the key or None) when the answer for ``token`` is fresh in the cache;
        (False, None) when only :meth:`lookup` (which asks the ledger) can tell."""
        hit = self._entries.get(hash_token(token))
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def lookup(self, token: str) -> KeyRecord | None:
        """The live key of ``token``, or None (unknown, wrong or revoked)."""
        fresh, key = self.cached(token)
        if fresh:
            return key
        digest = hash_token(token)
        now = time.monotonic()
        with self.db.transaction() as session:
            key = verify_token(session, token)
            if key is not None:
                touch_key(session, key.id, now=utcnow())
        with self._lock:
            if len(self._entries) > 10_000:  # wrong tokens must not grow it without end
                self._entries.clear()
            self._entries[digest] = (now + self.ttl, key)
        return key


@dataclass
class Resources:
    settings: Settings
    db: Database
    publisher: Publishes
    producer: Producer
    keys: KeyCache
    limiter: RequestLimiter
    redis: redis.Redis | None

    def close(self) -> None:
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()


def open_resources(settings: Settings) -> Resources:
    """Connect nothing yet: engines and pools connect on first use."""
    from worker.publish import broker_publisher
    from worker.redisconn import state_client

    # Celery's task messages, written without a Celery app (docs/decisions.md, 10)
    publisher = broker_publisher(settings)
    db = Database(settings.database_url)
    # the shared-state Redis (FIBOSMS_REDIS_URL, or the broker's; Sentinel too); without
    # one each API process keeps its own limits
    client = state_client(settings) if settings.api_rate_limit is not None else None
    return Resources(
        settings=settings,
        db=db,
        publisher=publisher,
        producer=Producer(settings=settings, db=db, publisher=publisher),
        keys=KeyCache(db),
        limiter=make_request_limiter(settings.api_rate_limit, client),
        redis=client,
    )
