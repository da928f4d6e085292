"""Celery's signals, wired to fibosms's logging, worker metrics and Flower guard.

:func:`install` runs when the app is built (``worker.app.make_app``), so ``fibosms worker``
and ``celery -A worker worker`` behave alike: logging is fibosms's (format, level, the
redacting filter), not Celery's, and a worker with ``FIBOSMS_WORKER_METRICS_PORT`` serves
its own metrics. Connecting a signal opens nothing.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from worker.settings import Settings

#: the settings of the app built last in this process (a worker builds one)
_settings: Settings | None = None


def install(app: Celery, settings: Settings) -> None:
    """Connect the handlers (idempotent) for the app built from ``settings``."""
    global _settings
    _settings = settings
    signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="fibosms.logging")
    signals.worker_init.connect(_worker_init, weak=False, dispatch_uid="fibosms.worker_init")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="fibosms.postrun")
    signals.worker_process_shutdown.connect(
        _process_shutdown, weak=False, dispatch_uid="fibosms.process_shutdown"
    )
    from worker.flower import guard_celery_command

    guard_celery_command(settings)


def _setup_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **_: Any
) -> None:
    # connected, this replaces Celery's own set-up (worker, beat)
    if _settings is None:
        return
    from worker.logs import configure_logging

    configure_logging(_settings, level=loglevel, logfile=logfile or None)


def _worker_init(**_: Any) -> None:
    if _settings is None:
        return
    from worker.metrics.process import observe_gateway_calls, start_worker_metrics

    observe_gateway_calls()
    if _settings.worker_metrics_port:
        start_worker_metrics(_settings.worker_metrics_port)


def _task_postrun(
    task: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    from worker.metrics.process import record_task

    name = getattr(task, "name", None)
    if name:
        record_task(str(name), retval, state)


def _process_shutdown(pid: int | None = None, **_: Any) -> None:
    from worker.metrics.process import child_exited

    if pid is not None:
        child_exited(pid)
