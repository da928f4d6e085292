"""What to do with a message after an attempt: a pure function of the outcome and the policy."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from worker.backoff import compute_backoff
from worker.codes import DUPLICATE_CONTENT, CodeClass, lookup
from worker.errors import AccountError, AmbiguousError, FiboError, PermanentError
from worker.settings import Settings
from worker.states import Status, Transition

#: the failure class of a message whose last attempt's outcome is unknown
AMBIGUOUS = "ambiguous"
OUTCOME_UNKNOWN = "outcome unknown"


@dataclass(frozen=True)
class Decision:
    """The row's next state. ``delay`` (seconds) is set when it is to be retried."""

    status: Status
    code: int | None = None
    error: str | None = None
    #: for dead letters: transient (budget spent), permanent, account or ambiguous
    failure_class: str | None = None
    meaning: str | None = None
    delay: float | None = None
    ambiguous: bool = False
    #: the account itself was refused: every other message would fail the same way
    account_wide: bool = False

    def transition(
        self, *, due: datetime | None, published_at: datetime | None, guessed: bool = False
    ) -> Transition:
        """The row change that records this decision; ``due`` is the retry's due time.

        ``guessed``: the outcome is the sweep's guess for a stalled attempt.
        """
        return Transition(
            status=self.status,
            code=self.code,
            error=self.error,
            next_attempt_at=due,
            published_at=published_at,
            ambiguous=self.ambiguous,
            failure_class=self.failure_class,
            meaning=self.meaning,
            guessed=guessed,
        )


def decide(
    outcome: int | FiboError,
    *,
    kind: str,
    attempts: int,
    prior_ambiguous: int,
    settings: Settings,
    rng: random.Random | None = None,
) -> Decision:
    """Map one attempt's outcome (a success code, or the error) to the row's next state.

    ``attempts`` counts this attempt within the retry budget (since the last replay);
    ``prior_ambiguous`` the earlier attempts whose outcome was unknown.
    """
    if isinstance(outcome, int):
        return Decision(Status.SENT, code=outcome)

    if (
        outcome.code == DUPLICATE_CONTENT
        and prior_ambiguous > 0
        and isinstance(outcome, PermanentError)
    ):
        # the gateway already has this text for this number: the unknown attempt got through
        return Decision(
            Status.SENT,
            code=outcome.code,
            error="duplicate content after an attempt with unknown outcome: taken as sent",
        )

    if isinstance(outcome, AmbiguousError):
        if kind in settings.ambiguous_retry_kinds and attempts < settings.max_attempts:
            return _retry(outcome, attempts, settings, rng, ambiguous=True)
        reason = OUTCOME_UNKNOWN if attempts < settings.max_attempts else (
            f"{OUTCOME_UNKNOWN}; retry budget of {settings.max_attempts} attempts spent"
        )
        return Decision(
            Status.DEAD,
            code=None,
            error=str(outcome),
            failure_class=AMBIGUOUS,
            meaning=reason,
            ambiguous=True,
        )

    if isinstance(outcome, PermanentError):
        return Decision(
            Status.DEAD,
            code=outcome.code,
            error=str(outcome),
            failure_class=outcome.cls.value,
            meaning=outcome.meaning,
            account_wide=isinstance(outcome, AccountError),
        )

    # transient: retry while the budget lasts
    if attempts < settings.max_attempts:
        return _retry(outcome, attempts, settings, rng, ambiguous=False)
    meaning = outcome.meaning if outcome.code is None else lookup(outcome.code).meaning
    return Decision(
        Status.DEAD,
        code=outcome.code,
        error=str(outcome),
        failure_class=CodeClass.TRANSIENT.value,
        meaning=f"{meaning}; retry budget of {settings.max_attempts} attempts spent",
    )


def _retry(
    outcome: FiboError,
    attempts: int,
    settings: Settings,
    rng: random.Random | None,
    *,
    ambiguous: bool,
) -> Decision:
    delay = compute_backoff(
        attempts,
        base=settings.retry_base_seconds,
        maximum=settings.retry_max_seconds,
        rng=rng,
    )
    return Decision(
        Status.RETRYING, code=outcome.code, error=str(outcome), delay=delay, ambiguous=ambiguous
    )
