"""A call cut by its deadline: where the request got to, and retries that stay within it."""

from __future__ import annotations

import time

import pytest
from tenacity import RetryCallState, Retrying, wait_fixed

from worker.gateway.deadline import StopAt, WaitWithin
from worker.gateway.transport import Phase, TransportFailure, cut_verdict, settle


def test_a_cut_after_sending_began_may_have_been_sent() -> None:
    verdict = cut_verdict(True, True, None, 35.0)
    assert verdict.phase is Phase.MAYBE_SENT
    assert verdict.reason == "no complete answer within the call deadline (35 s)"


def test_a_cut_after_sending_began_ignores_what_the_socket_said_after() -> None:
    # the cut itself shows up as "connection closed" or a clean EOF; neither is the gateway
    echo = TransportFailure(Phase.NOT_SENT, "could not connect")
    assert cut_verdict(True, True, echo, 2.0).phase is Phase.MAYBE_SENT


def test_a_cut_on_a_connection_that_never_began_sending_was_not_sent() -> None:
    echo = TransportFailure(Phase.MAYBE_SENT, "connection closed after the request was sent")
    verdict = cut_verdict(False, True, echo, 2.5)
    assert verdict.phase is Phase.NOT_SENT
    assert verdict.reason == "the call deadline (2.5 s) passed before the request left"


def test_without_a_connection_the_transports_own_verdict_stands() -> None:
    connect_timeout = TransportFailure(Phase.NOT_SENT, "connect timeout")
    assert cut_verdict(False, False, connect_timeout, 35.0) is connect_timeout


def test_with_nothing_known_a_cut_is_taken_as_maybe_sent() -> None:
    assert cut_verdict(False, False, None, 35.0).phase is Phase.MAYBE_SENT


READ_TIMEOUT = TransportFailure(Phase.MAYBE_SENT, "no answer within 1 s (read timeout)")


def test_a_failure_before_any_request_began_was_not_sent() -> None:
    # e.g. a TLS handshake that timed out: urllib3 calls it a read timeout
    settled = settle(READ_TIMEOUT, left=False, claimed=True)
    assert settled.phase is Phase.NOT_SENT
    assert settled.reason == "no answer within 1 s (read timeout), before the request left"


def test_a_failure_after_the_request_began_stays_maybe_sent() -> None:
    assert settle(READ_TIMEOUT, left=True, claimed=True) is READ_TIMEOUT


def test_without_a_report_from_the_connection_the_failure_stands() -> None:
    assert settle(READ_TIMEOUT, left=False, claimed=False) is READ_TIMEOUT
    refused = TransportFailure(Phase.NOT_SENT, "could not connect (refused)")
    assert settle(refused, left=False, claimed=True) is refused


def _state(retrying: Retrying) -> RetryCallState:
    return RetryCallState(retrying, fn=None, args=(), kwargs={})


def test_the_stop_fires_once_the_deadline_has_passed() -> None:
    retrying = Retrying()
    assert StopAt(time.monotonic() + 60)(_state(retrying)) is False
    assert StopAt(time.monotonic() - 0.001)(_state(retrying)) is True


@pytest.mark.parametrize(("left", "expected_max"), [(60.0, 5.0), (0.5, 0.5), (-1.0, 0.0)])
def test_a_backoff_never_sleeps_past_the_deadline(left: float, expected_max: float) -> None:
    wait = WaitWithin(wait_fixed(5.0), time.monotonic() + left)
    slept = wait(_state(Retrying()))
    assert 0.0 <= slept <= expected_max
    assert slept >= expected_max - 0.05
