import random

import pytest

from worker.codes import CODES, CodeClass
from worker.decide import AMBIGUOUS, OUTCOME_UNKNOWN, decide
from worker.errors import AmbiguousError, BadResponse, NotSent, error_for_code
from worker.ledger.models import Status
from worker.settings import Settings

SETTINGS = Settings.from_env({"FIBOSMS_MAX_ATTEMPTS": "3"})


def run(outcome: int | Exception, *, kind: str = "transactional", attempts: int = 1,
        prior_ambiguous: int = 0):  # type: ignore[no-untyped-def]
    return decide(outcome, kind=kind, attempts=attempts, prior_ambiguous=prior_ambiguous,  # type: ignore[arg-type]
                  settings=SETTINGS, rng=random.Random(0))


@pytest.mark.parametrize("code", [200, 1])
def test_success_codes_mean_sent(code: int) -> None:
    assert run(code).status is Status.SENT


@pytest.mark.parametrize("code", [c for c, r in CODES.items() if r.cls is CodeClass.TRANSIENT])
def test_transient_codes_retry_with_a_delay_inside_the_window(code: int) -> None:
    d = run(error_for_code(code), attempts=2)
    assert d.status is Status.RETRYING and d.code == code
    assert d.delay is not None and 30 <= d.delay <= 120


@pytest.mark.parametrize("exc", [NotSent("refused"), BadResponse("html", http_status=502)])
def test_transport_failures_retry(exc: Exception) -> None:
    assert run(exc).status is Status.RETRYING


def test_a_spent_budget_dead_letters_a_transient_failure() -> None:
    d = run(error_for_code(2), attempts=3)
    assert d.status is Status.DEAD and d.failure_class == "transient"
    assert d.meaning is not None and "3 attempts" in d.meaning


@pytest.mark.parametrize(
    "code", [c for c, r in CODES.items() if r.cls in (CodeClass.PERMANENT, CodeClass.ACCOUNT)]
)
def test_permanent_codes_dead_letter_at_once(code: int) -> None:
    d = run(error_for_code(code))
    assert d.status is Status.DEAD and d.code == code
    assert d.account_wide == (CODES[code].cls is CodeClass.ACCOUNT)
    assert d.meaning == CODES[code].meaning


def test_an_unknown_code_is_permanent() -> None:
    d = run(error_for_code(777))
    assert d.status is Status.DEAD and d.failure_class == "permanent"


@pytest.mark.parametrize("kind", ["otp", "transactional"])
def test_ambiguous_otp_and_transactional_retry_by_default(kind: str) -> None:
    d = run(AmbiguousError("read timeout"), kind=kind)
    assert d.status is Status.RETRYING and d.ambiguous


def test_ambiguous_marketing_is_dead_lettered_as_outcome_unknown() -> None:
    d = run(AmbiguousError("read timeout"), kind="marketing")
    assert d.status is Status.DEAD and d.ambiguous
    assert (d.failure_class, d.meaning) == (AMBIGUOUS, OUTCOME_UNKNOWN)


def test_duplicate_content_after_an_ambiguous_attempt_counts_as_sent() -> None:
    assert run(error_for_code(6), attempts=2, prior_ambiguous=1).status is Status.SENT
    assert run(error_for_code(6), attempts=2, prior_ambiguous=0).status is Status.DEAD
