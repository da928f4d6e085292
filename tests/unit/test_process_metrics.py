"""A worker's own metrics, observed from the gateway client's records and task outcomes."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from worker.metrics.process import GatewayCallObserver, observe_gateway_calls, record_task


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_gateway_record_becomes_a_latency_observation() -> None:
    before = sample("fibosms_gateway_call_seconds_count", op="balance", outcome="TransientError")
    rec = logging.LogRecord("fibosms.gateway", logging.INFO, __file__, 1, "fibo", None, None)
    rec.fibo_op, rec.fibo_outcome, rec.fibo_ms = "balance", "TransientError", 1500
    GatewayCallObserver().handle(rec)
    after = sample("fibosms_gateway_call_seconds_count", op="balance", outcome="TransientError")
    assert after == before + 1
    assert sample("fibosms_gateway_call_seconds_bucket", op="balance",
                  outcome="TransientError", le="1.0") == 0
    assert sample("fibosms_gateway_call_seconds_bucket", op="balance",
                  outcome="TransientError", le="2.0") >= 1


def test_the_observer_hears_the_client_even_above_its_log_level() -> None:
    logger = logging.getLogger("fibosms.gateway")
    saved = logger.level
    logging.getLogger("fibosms").setLevel(logging.WARNING)
    try:
        observe_gateway_calls()
        before = sample("fibosms_gateway_call_seconds_count", op="totals", outcome="ok")
        logger.info("fibo totals", extra={"fibo_op": "totals", "fibo_outcome": "ok",
                                          "fibo_ms": 20})
        assert sample("fibosms_gateway_call_seconds_count", op="totals", outcome="ok") == (
            before + 1
        )
    finally:
        logger.setLevel(saved)
        logging.getLogger("fibosms").setLevel(logging.NOTSET)


def test_task_outcomes_and_sweep_reports_are_counted() -> None:
    sent = sample("fibosms_task_results_total", task="fibosms.send_sms", result="sent")
    errors = sample("fibosms_task_results_total", task="fibosms.send_sms", result="error")
    published = sample("fibosms_sweep_rows_total", action="published")
    record_task("fibosms.send_sms", "sent", "SUCCESS")
    record_task("fibosms.send_sms", RuntimeError("x"), "FAILURE")
    record_task("fibosms.sweep", {"recovered": 0, "published": 5, "publish_failed": 0},
                "SUCCESS")
    assert sample("fibosms_task_results_total", task="fibosms.send_sms", result="sent") == (
        sent + 1
    )
    assert sample("fibosms_task_results_total", task="fibosms.send_sms", result="error") == (
        errors + 1
    )
    assert sample("fibosms_sweep_rows_total", action="published") == published + 5
    assert sample("fibosms_sweep_last_run_timestamp_seconds") > 0
