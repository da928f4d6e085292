"""The health runner: deadlines, selection, and details without secrets."""

from __future__ import annotations

import time

import pytest

from worker.health import run_checks
from worker.settings import Settings

SETTINGS = Settings.from_env({
    "FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_CLIENT_PASS": "Gw-Secret-77",
    "FIBOSMS_BROKER_URL": "redis://:Redis-Secret-88@broker:6379/0",
})


def ok(_: Settings) -> str:
    return "fine"


def hangs(_: Settings) -> str:
    time.sleep(30)
    return "never"


def leaks(s: Settings) -> str:
    raise RuntimeError(f"GET /x?clientPass={s.client_pass} to 0912345678 via {s.broker_url}")


def test_a_hung_check_fails_at_its_deadline_and_the_others_still_report() -> None:
    started = time.monotonic()
    results = run_checks(SETTINGS, timeout=0.5, checks={"a": ok, "b": hangs})
    assert time.monotonic() - started < 3
    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", False)]
    assert results[1].detail == "no answer within 0.5 s"


def test_a_failure_detail_carries_no_secret_and_no_full_number() -> None:
    [result] = run_checks(SETTINGS, checks={"x": leaks})
    assert not result.ok
    assert result.detail.startswith("RuntimeError: ")
    for secret in ("Gw-Secret-77", "Redis-Secret-88", "0912345678"):
        assert secret not in result.detail


def test_checks_are_chosen_by_name() -> None:
    results = run_checks(SETTINGS, ["b"], checks={"a": ok, "b": ok})
    assert [r.name for r in results] == ["b"]
    with pytest.raises(ValueError, match="dns"):
        run_checks(SETTINGS, ["dns"], checks={"a": ok})
