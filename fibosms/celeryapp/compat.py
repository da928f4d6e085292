"""Work-arounds for faults in the libraries we run on; each names the test that shows it.

Installed by ``fibosms.celeryapp.app.make_app``; installing twice is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("fibosms.compat")

_installed = False


def install() -> None:
    """Apply every work-around (idempotent)."""
    global _installed
    if _installed:
        return
    _patch_kombu_redis_restore_unacked()
    _installed = True


def _patch_kombu_redis_restore_unacked() -> None:
    """A worker must survive a broker that stops answering, then goes away.

    Celery 5.7 / kombu 5.7, Redis transport: when acknowledgements fail (the broker is
    frozen or unreachable) the tasks stay in the channel's unacked set; when the consumer
    then loses its connection, Celery collects the connection (which drops the transport's
    reference to it) and closes it again, and the channel's close tries to restore the
    unacked tasks through the dropped connection: ``AttributeError: 'NoneType' object has
    no attribute 'hostname'``, which Celery treats as unrecoverable — the worker exits.

    Restoring is impossible at that point anyway (no connection). The tasks stay in Redis's
    unacked set (handed out again after the visibility timeout) and, above all, their rows
    are in the ledger, whose sweep publishes them again. So: skip the restore and log it.
    Shown by tests/system/test_broker_faults.py (the broker frozen, then gone).
    """
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - the redis extra is a dependency
        return
    original: Any = kombu_redis.QoS.restore_unacked

    def restore_unacked(self: Any, client: Any = None) -> Any:
        transport = getattr(self.channel, "connection", None)
        if client is None and getattr(transport, "client", None) is None:
            pending = len(self._delivered)
            self._delivered.clear()
            if pending:
                log.warning(
                    "broker connection already closed: %d unacknowledged task(s) left to the "
                    "visibility timeout and the sweep",
                    pending,
                )
            return None
        return original(self, client)

    setattr(kombu_redis.QoS, "restore_unacked", restore_unacked)  # noqa: B010

