"""Celery's signals, wired to fibosms's logging, worker metrics, resources and Flower guard.

:func:`install` runs when the app is built (``app.make_app``), so ``fibosms worker`` and
``celery -A worker worker`` behave alike: logging is fibosms's (format, level, the
redacting filter), not Celery's; a prefork child builds its resources as it starts and
closes them as it ends; a worker with ``FIBOSMS_WORKER_METRICS_PORT`` serves its own
metrics. Connecting a signal opens nothing.

The handlers are bound to the app they were installed for (the one built last in the
process: a worker, beat or Flower builds one); nothing is kept in a module global.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from fibosms.celeryapp import resources
from fibosms.celeryapp.resources import settings_of


class _Handlers:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings = settings_of(app)

    def setup_logging(
        self, loglevel: int | str | None = None, logfile: str | None = None, **_: Any
    ) -> None:
        # connected, this replaces Celery's own set-up (worker, beat)
        from worker.logs import configure_logging

        configure_logging(self.settings, level=loglevel, logfile=logfile or None)

    def worker_init(self, sender: Any = None, **_: Any) -> None:
        from worker.metrics.process import observe_gateway_calls, start_worker_metrics

        observe_gateway_calls()
        if self.settings.worker_metrics_port:
            start_worker_metrics(self.settings.worker_metrics_port)
        if sender is not None and not _forks_children(sender):
            # a threads or solo worker runs its tasks in this process: build now
            resources.start_process(self.app)

    def process_init(self, **_: Any) -> None:
        # a prefork child: its own pools, before its first task
        resources.start_process(self.app)

    def process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        resources.close_process()
        from worker.metrics.process import child_exited

        if pid is not None:
            child_exited(pid)

    def worker_shutdown(self, **_: Any) -> None:
        # the main process of a threads or solo worker held the resources itself
        resources.close_process()

    @staticmethod
    def task_postrun(
        task: Any = None, retval: Any = None, state: str | None = None, **_: Any
    ) -> None:
        from worker.metrics.process import record_task

        name = getattr(task, "name", None)
        if name:
            record_task(str(name), retval, state)


def _forks_children(worker: Any) -> bool:
    """Whether this worker's pool runs tasks in forked children (prefork)."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    pool = get_implementation(worker.pool_cls or worker.app.conf.worker_pool)
    return isinstance(pool, type) and issubclass(pool, PreforkPool)


def install(app: Celery) -> None:
    """Connect the handlers for ``app``, replacing those of an app built before it."""
    handlers = _Handlers(app)
    for signal, receiver, uid in (
        (signals.setup_logging, handlers.setup_logging, "fibosms.logging"),
        (signals.worker_init, handlers.worker_init, "fibosms.worker_init"),
        (signals.worker_process_init, handlers.process_init, "fibosms.process_init"),
        (signals.worker_process_shutdown, handlers.process_shutdown, "fibosms.process_shutdown"),
        (signals.worker_shutdown, handlers.worker_shutdown, "fibosms.worker_shutdown"),
        (signals.task_postrun, handlers.task_postrun, "fibosms.postrun"),
    ):
        signal.disconnect(dispatch_uid=uid)
        signal.connect(receiver, weak=False, dispatch_uid=uid)
    from fibosms.celeryapp.flower import guard_celery_command

    guard_celery_command(app.fibosms_settings)
