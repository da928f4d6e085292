"""The ceiling: a Celery app configured exactly like fibosms's, whose one task does nothing.

``celeryconfig.build(settings)`` gives it the same broker, serializer, ``acks_late``,
``task_reject_on_worker_lost``, prefetch multiplier, queues and task events as the pipeline's
app; the worker is started the way ``fibosms worker`` starts one (``configure_logging`` first,
then Celery's own command line, so the same -P / -c / logging apply). What the pipeline's worker
does on top of this per message (database, HTTP, logging) is the difference between the two
rates.

    python -m bench.noop_app worker -P threads -c 16 --loglevel INFO

The task takes one integer, like ``fibosms.send_sms(message_id)``, so the messages on the
broker are the same size.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery

import celeryconfig
from worker.settings import Settings

NOOP_TASK = "bench.noop"


#: set to 0 in the worker's environment to turn task events off (a variant of the ceiling that
#: shows what Flower's events cost); anything else keeps celeryconfig's choice
EVENTS_ENV = "BENCH_NOOP_TASK_EVENTS"


def make_noop_app(settings: Settings, *, events: bool | None = None) -> Celery:
    """A Celery app with fibosms's configuration and a single no-op task.

    ``events=False`` turns task events off (``celeryconfig`` turns them on with Redis).
    """
    app = Celery("fibosms-bench-noop", set_as_current=False)
    app.conf.update(celeryconfig.build(settings))
    # nothing periodic: beat is not part of the ceiling
    app.conf.beat_schedule = {}
    if events is False:
        app.conf.worker_send_task_events = False
        app.conf.task_send_sent_event = False

    @app.task(name=NOOP_TASK)  # type: ignore[untyped-decorator]
    def noop(message_id: int) -> None:
        """Nothing: the cost of a task through this broker, pool and configuration."""
        return None

    return app


def publish_noops(app: Celery, count: int, *, queue: str = "default") -> None:
    """Publish ``count`` no-op tasks the way fibosms's Publisher publishes send_sms."""
    with app.producer_or_acquire() as producer:
        for i in range(count):
            app.send_task(NOOP_TASK, args=[i], queue=queue, producer=producer)


_app: Celery | None = None


def _events_from_env() -> bool | None:
    return False if os.environ.get(EVENTS_ENV, "").strip() == "0" else None


def __getattr__(name: str) -> Any:
    # ``celery -A bench.noop_app`` finds ``app``, built on first access from the environment
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = make_noop_app(Settings.from_env(), events=_events_from_env())
        return _app
    raise AttributeError(f"module 'bench.noop_app' has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.noop_app worker …``: as ``fibosms worker`` does it."""
    from worker.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings)
    app = make_noop_app(settings, events=_events_from_env())
    app.start(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
