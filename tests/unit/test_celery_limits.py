"""The send tasks' time limits, which bound a worker's warm shutdown."""

from __future__ import annotations

from fibosms.celeryapp.config import send_time_limits, shutdown_bound_seconds
from worker.brokers import SEND_BATCH_TASK, SEND_TASK
from worker.settings import Settings
from worker.settings.rules import TOKEN_WAIT_MAX_SECONDS


def test_defaults_one_call_for_send_sms_two_rounds_for_a_batch() -> None:
    s = Settings.from_env({})
    assert (s.call_deadline_seconds, s.bulk_batch_size, s.batch_concurrency) == (35.0, 50, 32)
    limits = send_time_limits(s)
    # one call + 5 s of ledger work; the hard limit 5 s later
    assert limits[SEND_TASK] == (40.0, 45.0)
    # 50 calls, 32 at a time: two rounds of calls
    assert limits[SEND_BATCH_TASK] == (75.0, 80.0)
    assert shutdown_bound_seconds(s) == 80.0


def test_the_limits_follow_the_call_deadline_and_the_batch_shape() -> None:
    s = Settings.from_env({
        "FIBOSMS_CALL_DEADLINE_SECONDS": "10",
        "FIBOSMS_BULK_BATCH_SIZE": "100",
        "FIBOSMS_BATCH_CONCURRENCY": "25",
    })
    assert send_time_limits(s) == {SEND_TASK: (15.0, 20.0), SEND_BATCH_TASK: (45.0, 50.0)}
    # a batch that fits one round costs one call
    one_round = Settings.from_env(
        {"FIBOSMS_BULK_BATCH_SIZE": "8", "FIBOSMS_BATCH_CONCURRENCY": "8"}
    )
    assert send_time_limits(one_round)[SEND_BATCH_TASK] == (40.0, 45.0)


def test_a_rate_limit_adds_the_token_wait_to_each_round() -> None:
    s = Settings.from_env({"FIBOSMS_RATE_LIMIT": "5", "FIBOSMS_SENDING_TIMEOUT_SECONDS": "120"})
    wait = min(TOKEN_WAIT_MAX_SECONDS, 60.0)
    assert send_time_limits(s)[SEND_TASK] == (35.0 + wait + 5.0, 35.0 + wait + 10.0)
    assert send_time_limits(s)[SEND_BATCH_TASK][0] == 2 * (35.0 + wait) + 5.0


def test_the_tasks_carry_the_limits() -> None:
    from fibosms.celeryapp import make_app

    app = make_app(Settings.from_env({"FIBOSMS_CALL_DEADLINE_SECONDS": "3"}))
    for name, (soft, hard) in send_time_limits(app.fibosms_settings).items():
        task = app.tasks[name]
        assert (task.soft_time_limit, task.time_limit) == (soft, hard), name
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True
