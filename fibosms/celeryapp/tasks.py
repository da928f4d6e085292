"""The Celery tasks: each parses its arguments, calls a plain function, returns a word.

Arguments are message ids only, so Flower and the broker never see a number or a text.
The send tasks carry time limits derived from the gateway call deadline
(``config.send_time_limits``), which bound a worker's warm shutdown.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from fibosms.celeryapp.config import send_time_limits
from fibosms.celeryapp.gather import GatheringTask
from fibosms.celeryapp.resources import resources_of, settings_of
from worker.brokers import (
    DELIVER_ALERTS_TASK,
    POLL_BALANCE_TASK,
    POLL_TOTALS_TASK,
    RECONCILE_DAY_TASK,
    SEND_BATCH_TASK,
    SEND_TASK,
    SWEEP_TASK,
)
from worker.clock import now
from worker.sending import process_batch, process_message
from worker.sweep import sweep
from worker.watch.alerts import deliver_alerts
from worker.watch.polls import poll_balance, poll_totals, reconcile_closed_day

log = logging.getLogger("fibosms.tasks")


def register(app: Celery) -> None:
    """Register fibosms's tasks on ``app`` alone.

    ``shared=False``: Celery would otherwise add every app's tasks to each app finalized
    later in the process, so a second app would run the first one's (its time limits).
    """
    limits = send_time_limits(settings_of(app))

    soft, hard = limits[SEND_TASK]

    settings = settings_of(app)

    def send_many(message_ids: list[int]) -> dict[int, str]:
        """Several messages that gathered on a busy worker, sent as the bulk path does."""
        rt = resources_of(app)
        results = process_batch(
            message_ids,
            settings=rt.settings,
            db=rt.db,
            client=rt.client,
            publisher=rt.publisher,
            executor=rt.executor,
            gate=rt.gate,
        )
        words = {mid: result.value for mid, result in results.items()}
        counts: dict[str, int] = {}
        for mid in message_ids:  # a task delivered twice in one run counts twice, as it ran
            word = words.get(mid, "skipped")
            counts[word] = counts.get(word, 0) + 1
        log.info("send_sms ran %d gathered messages: %s", len(message_ids), counts)
        return words

    @app.task(
        name=SEND_TASK, bind=True, shared=False, soft_time_limit=soft, time_limit=hard,
        base=GatheringTask,
        gather_size=settings.single_batch_size,
        gather_window=settings.single_batch_window_ms / 1000,
        run_many=staticmethod(send_many),
    )
    def send_sms(self: Task, message_id: int) -> str:
        """Send one message from the ledger (at most one accepted send; docs/architecture.md)."""
        rt = resources_of(self.app)
        return process_message(
            int(message_id),
            settings=rt.settings,
            db=rt.db,
            client=rt.client,
            publisher=rt.publisher,
            gate=rt.gate,
        ).value

    soft, hard = limits[SEND_BATCH_TASK]

    @app.task(name=SEND_BATCH_TASK, bind=True, shared=False, soft_time_limit=soft, time_limit=hard)
    def send_batch(self: Task, message_ids: list[int]) -> dict[str, int]:
        """Send a batch of bulk messages concurrently; counts of what happened."""
        rt = resources_of(self.app)
        results = process_batch(
            [int(i) for i in message_ids],
            settings=rt.settings,
            db=rt.db,
            client=rt.client,
            publisher=rt.publisher,
            executor=rt.executor,
            gate=rt.bulk_gate,
        )
        counts: dict[str, int] = {}
        for result in results.values():
            counts[result.value] = counts.get(result.value, 0) + 1
        log.info("send_batch of %d messages: %s", len(message_ids), counts)
        return counts

    @app.task(name=SWEEP_TASK, bind=True, shared=False)
    def sweep_ledger(self: Task) -> dict[str, Any]:
        """Recover stalled attempts and publish due messages the broker does not hold."""
        rt = resources_of(self.app)
        return sweep(
            settings=rt.settings, db=rt.db, publisher=rt.publisher, marker=rt.marker
        ).as_dict()

    @app.task(name=POLL_BALANCE_TASK, bind=True, shared=False)
    def poll_account_balance(self: Task) -> str:
        """Store the balance; alert when low; resume after a top-up."""
        rt = resources_of(self.app)
        got = poll_balance(
            settings=rt.settings, db=rt.db, client=rt.client, now=now(), publisher=rt.publisher
        )
        return "failed" if got is None else str(got[0])

    @app.task(name=POLL_TOTALS_TASK, bind=True, shared=False)
    def poll_account_totals(self: Task) -> str:
        """Store today's GetTotalMt counters and reconcile the day."""
        rt = resources_of(self.app)
        check = poll_totals(settings=rt.settings, db=rt.db, client=rt.client, now=now())
        return "failed" if check is None else ("mismatch" if check.mismatch else "ok")

    @app.task(name=RECONCILE_DAY_TASK, bind=True, shared=False)
    def reconcile_yesterday(self: Task) -> str:
        """Reconcile the Vietnam day that just closed."""
        rt = resources_of(self.app)
        check = reconcile_closed_day(settings=rt.settings, db=rt.db, now=now())
        return "no totals" if check is None else ("mismatch" if check.mismatch else "ok")

    @app.task(name=DELIVER_ALERTS_TASK, bind=True, shared=False)
    def deliver_pending_alerts(self: Task) -> int:
        """POST alerts not yet delivered to the webhook."""
        rt = resources_of(self.app)
        return deliver_alerts(rt.settings, rt.db, now())
