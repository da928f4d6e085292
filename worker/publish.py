"""Hand message ids to the broker. Only ids travel: never a number, a text or a secret.

Messages for the bulk queue travel in ``send_batch`` tasks of up to
FIBOSMS_BULK_BATCH_SIZE ids, so a campaign costs one task per batch; the others travel
one ``send_sms`` task each.

The :class:`Publisher` is given what it publishes through (a Celery app, or anything with
``send_task`` and ``producer_or_acquire``) when it is built; it knows nothing of how that
app is made (``fibosms.celeryapp``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from worker.brokers import BATCHED_QUEUE, SEND_BATCH_TASK, SEND_TASK

log = logging.getLogger("fibosms.publish")

__all__ = ["BATCHED_QUEUE", "Publisher", "Publishes", "TaskSender"]


class Publishes(Protocol):
    """What the send path, the sweep and replay need: publish ids, learn which failed."""

    def publish(
        self, items: list[tuple[int, str]], *, countdown: float | None = ...
    ) -> list[int]: ...


class TaskSender(Protocol):
    """The part of a Celery app a :class:`Publisher` uses."""

    def producer_or_acquire(self, producer: Any = ...) -> AbstractContextManager[Any]: ...

    def send_task(self, name: str, args: Any = ..., **options: Any) -> Any: ...


class Publisher:
    """Publishes send tasks through one Celery app's producer pool."""

    def __init__(
        self,
        app: TaskSender,
        *,
        batch_size: int,
        confirm_timeout: float | None = None,
        whole_seconds: bool = False,
    ) -> None:
        """``confirm_timeout``: seconds a publish waits for the broker's confirm;
        ``whole_seconds``: countdowns rounded up to whole seconds. Both for RabbitMQ, see
        ``worker.brokers.publish_options``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.app = app
        self.batch_size = batch_size
        self._options: dict[str, Any] = (
            {} if confirm_timeout is None else {"confirm_timeout": confirm_timeout}
        )
        self.whole_seconds = whole_seconds

    def publish(
        self, items: Sequence[tuple[int, str]], *, countdown: float | None = None
    ) -> list[int]:
        """Publish ``(message id, queue)`` pairs; returns the ids that could not be published.

        A failure is not fatal: the rows are committed, and the sweep publishes them later.
        """
        if not items:
            return []
        tasks = self._tasks(items)
        if countdown is not None and self.whole_seconds and countdown > 0:
            countdown = float(math.ceil(countdown))
        done = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for name, ids, queue in tasks:
                    args = [ids] if name == SEND_BATCH_TASK else [ids[0]]
                    self.app.send_task(
                        name, args=args, queue=queue, countdown=countdown, producer=producer,
                        **self._options,
                    )
                    done += 1
        except Exception as exc:  # the broker is down or unreachable: leave it to the sweep
            log.warning(
                "publish failed for %d of %d tasks; the sweep will publish them (%s)",
                len(tasks) - done,
                len(tasks),
                type(exc).__name__,
            )
        failed: list[int] = []
        for _, ids, _ in tasks[done:]:
            failed.extend(ids)
        return failed

    def _tasks(self, items: Sequence[tuple[int, str]]) -> list[tuple[str, list[int], str]]:
        """(task name, message ids, queue): bulk ids in batches, the others one by one."""
        tasks = [(SEND_TASK, [mid], queue) for mid, queue in items if queue != BATCHED_QUEUE]
        bulk = [mid for mid, queue in items if queue == BATCHED_QUEUE]
        for start in range(0, len(bulk), self.batch_size):
            tasks.append((SEND_BATCH_TASK, bulk[start : start + self.batch_size], BATCHED_QUEUE))
        return tasks
