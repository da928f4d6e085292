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
    _patch_billiard_soft_timeout_once()
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


def _patch_billiard_soft_timeout_once() -> None:
    """A task's soft time limit must interrupt it once, not twice.

    Celery 5.7 / billiard 4.2, prefork pool: when a task passes its soft time limit during a
    warm shutdown, the parent signals the child (SIGUSR1) twice — once from the event
    loop's timer, once more from the pool's own timeout check as it closes — and the child
    raises ``SoftTimeLimitExceeded`` for each. The second lands wherever the task then is:
    in the handler of the first (a "--- Logging error ---" in the log), or in the
    transaction recording the interrupted attempt, which then never commits.

    The child's handler (looked up by name when each child starts) now raises once per
    task. Shown by tests/integration/test_shutdown.py.
    """
    try:
        from billiard import pool as billiard_pool  # type: ignore[import-untyped]
        from billiard.exceptions import SoftTimeLimitExceeded  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - celery depends on billiard
        return
    from celery._state import get_current_task

    raised_for: list[object] = [None]  # the request id the limit was last raised for

    def soft_timeout_once(signum: int, frame: Any) -> None:
        task = get_current_task()
        request_id = getattr(getattr(task, "request", None), "id", None)
        if request_id is not None and raised_for[0] == request_id:
            log.warning("soft time limit signalled again for the same task; ignored")
            return
        raised_for[0] = request_id
        raise SoftTimeLimitExceeded()

    setattr(billiard_pool, "soft_timeout_sighandler", soft_timeout_once)  # noqa: B010
