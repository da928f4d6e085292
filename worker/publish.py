"""Hand message ids to the broker. Only ids travel: never a number, a text or a secret."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from celeryconfig import SEND_TASK

log = logging.getLogger("fibosms.publish")


class Publisher:
    """Publishes ``send_sms(id)`` tasks through one Celery app's producer pool."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(
        self, items: Sequence[tuple[int, str]], *, countdown: float | None = None
    ) -> list[int]:
        """Publish ``(message id, queue)`` pairs; returns the ids that could not be published.

        A failure is not fatal: the rows are committed, and the sweep publishes them later.
        """
        if not items:
            return []
        done = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for message_id, queue in items:
                    self.app.send_task(
                        SEND_TASK,
                        args=[message_id],
                        queue=queue,
                        countdown=countdown,
                        producer=producer,
                    )
                    done += 1
        except Exception as exc:  # the broker is down or unreachable: leave it to the sweep
            log.warning(
                "publish failed for %d of %d messages; the sweep will publish them (%s)",
                len(items) - done,
                len(items),
                type(exc).__name__,
            )
        return [message_id for message_id, _ in items[done:]]
