"""A worker process's own metrics: gateway call latency, task outcomes, sweep passes.

These cannot come from the ledger (no call's duration is stored), so each worker measures
them itself and serves them on ``FIBOSMS_WORKER_METRICS_PORT`` (off by default). Prometheus
scrapes every worker: the PromQL in the README sums over them.

* gateway latency: the FIBO client logs one record per call with ``fibo_op``,
  ``fibo_outcome`` and ``fibo_ms``; :class:`GatewayCallObserver`, a logging handler on
  ``fibosms.gateway``, turns each into a histogram observation — the client stays unaware;
* task outcomes and sweep passes: Celery's ``task_postrun`` signal (the return value of
  ``send_sms`` is the outcome word, the sweep's is its report).

Pools: with ``-P threads`` (recommended) or ``solo`` everything runs in the worker's one
process. Under prefork, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable by
the worker (before it starts): each child writes its samples there and the server in the
parent adds them up (Prometheus client multiprocess mode).

Creating the metrics below opens nothing; they live in the default registry.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from worker.brokers import SEND_TASK, SWEEP_TASK
from worker.metrics.serve import serve_in_thread

log = logging.getLogger("fibosms.metrics")

#: seconds: the read timeout is 30 s by default, so the top buckets matter
GATEWAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)

GATEWAY_CALL_SECONDS = Histogram(
    "fibosms_gateway_call_seconds",
    "One HTTP call to the FIBO gateway, by operation (send, balance, totals) and outcome "
    "(ok, or the error class: TransientError, AmbiguousError, NotSent, …).",
    ["op", "outcome"],
    buckets=GATEWAY_BUCKETS,
)
TASK_RESULTS = Counter(
    "fibosms_task_results",
    "Task runs in this worker by task name and result (send_sms: sent, retrying, dead, "
    "expired, skipped, lost-claim; error: the task raised).",
    ["task", "result"],
)
SWEEP_ROWS = Counter(
    "fibosms_sweep_rows",
    "Rows the sweep handled: recovered (stalled attempts), published, publish_failed.",
    ["action"],
)
SWEEP_LAST_RUN = Gauge(
    "fibosms_sweep_last_run_timestamp_seconds",
    "When a sweep pass last finished in this worker (Unix time).",
    multiprocess_mode="max",
)

#: the sweep report keys counted by fibosms_sweep_rows
SWEEP_ACTIONS = ("recovered", "published", "publish_failed")


class GatewayCallObserver(logging.Handler):
    """Observes ``fibosms_gateway_call_seconds`` from the client's per-call log records."""

    def emit(self, record: logging.LogRecord) -> None:
        op = getattr(record, "fibo_op", None)
        ms = getattr(record, "fibo_ms", None)
        if op is None or not isinstance(ms, int | float):
            return
        outcome = str(getattr(record, "fibo_outcome", None) or "unknown")
        GATEWAY_CALL_SECONDS.labels(op=str(op), outcome=outcome).observe(ms / 1000.0)


_observer = GatewayCallObserver(level=logging.INFO)


def observe_gateway_calls() -> None:
    """Attach the observer to ``fibosms.gateway`` (idempotent).

    The client logs at INFO; the logger is kept at INFO so the records exist even when
    ``FIBOSMS_LOG_LEVEL`` is higher (the output handler still filters at that level).
    """
    logger = logging.getLogger("fibosms.gateway")
    if _observer not in logger.handlers:
        logger.addHandler(_observer)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def record_task(task_name: str, retval: Any, state: str | None) -> None:
    """Count one finished task run (Celery's ``task_postrun``)."""
    if task_name not in (SEND_TASK, SWEEP_TASK):
        result = "ok" if state == "SUCCESS" else "error"
    elif state != "SUCCESS":
        result = "error"
    elif task_name == SEND_TASK:
        result = str(retval)
    else:
        result = "ok"
        if isinstance(retval, dict):
            for action in SWEEP_ACTIONS:
                count = retval.get(action)
                if isinstance(count, int) and count > 0:
                    SWEEP_ROWS.labels(action=action).inc(count)
        SWEEP_LAST_RUN.set(time.time())
    TASK_RESULTS.labels(task=task_name, result=result).inc()


def worker_registry() -> CollectorRegistry:
    """The default registry, or the children's files under multiprocess mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def start_worker_metrics(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104 - scraped
    """Serve this worker's metrics; False (logged) when the port is taken."""
    try:
        serve_in_thread(worker_registry(), host=host, port=port)
    except OSError as exc:
        log.warning("worker metrics not served on port %d: %s", port, exc.strerror or exc)
        return False
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return True


def child_exited(pid: int) -> None:
    """Multiprocess mode: drop a finished prefork child's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
