"""The Celery tasks: each parses its arguments, calls a plain function, returns a word.

Arguments are message ids only, so Flower and the broker never see a number or a text.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from celeryconfig import SEND_TASK, SWEEP_TASK
from worker.runtime import get_runtime
from worker.sending import process_message
from worker.sweep import sweep


def register(app: Celery) -> None:
    """Register fibosms's tasks on ``app``."""

    @app.task(name=SEND_TASK, bind=True)
    def send_sms(self: Task, message_id: int) -> str:
        """Send one message from the ledger (at most one accepted send; see DESIGN.md)."""
        rt = get_runtime(self.app)
        return process_message(
            int(message_id),
            settings=rt.settings,
            db=rt.db,
            client=rt.client,
            publisher=rt.publisher,
        ).value

    @app.task(name=SWEEP_TASK, bind=True)
    def sweep_ledger(self: Task) -> dict[str, Any]:
        """Recover stalled attempts and publish due messages the broker does not hold."""
        rt = get_runtime(self.app)
        return sweep(settings=rt.settings, db=rt.db, publisher=rt.publisher).as_dict()
