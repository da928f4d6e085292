"""One attempt at one message: claim, call the gateway, record the outcome.

Plain Python: the Celery task only calls :func:`process_message`.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from celeryconfig import COUNTDOWN_MAX_SECONDS
from worker.codes import INSUFFICIENT_BALANCE
from worker.decide import Decision, decide
from worker.errors import AmbiguousError, FiboError
from worker.ledger.claims import (
    ClaimedMessage,
    Transition,
    claim,
    expire_if_due,
    finish_attempt,
    give_back,
    mark_unpublished,
)
from worker.ledger.db import Database
from worker.ledger.models import Status
from worker.rules.phone import format_for_gateway, mask_phone
from worker.settings import Settings
from worker.watch.account import is_paused, pause
from worker.watch.alerts import raise_alert

log = logging.getLogger("fibosms.send")


class Result(StrEnum):
    """What one run of the send task did."""

    SENT = "sent"
    RETRYING = "retrying"
    DEAD = "dead"
    EXPIRED = "expired"
    #: not ours: already sent, being sent, not yet due, or unknown id
    SKIPPED = "skipped"
    #: the sweep took the row over while we were calling the gateway
    LOST_CLAIM = "lost-claim"
    #: the account is paused: the message waits in the ledger, its attempts untouched
    PAUSED = "paused"


class Sender(Protocol):
    def send(
        self, phone: str, text: str, *, sender: str | None = ..., service_type: int = ...
    ) -> object: ...


class Publishes(Protocol):
    def publish(
        self, items: list[tuple[int, str]], *, countdown: float | None = ...
    ) -> list[int]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def process_message(
    message_id: int,
    *,
    settings: Settings,
    db: Database,
    client: Sender,
    publisher: Publishes,
    rng: random.Random | None = None,
) -> Result:
    """Send message ``message_id`` once if it is ours to send, and record what happened."""
    now = utcnow()
    with db.transaction() as session:
        if expire_if_due(session, message_id, now):
            log.info("message expired before sending", extra={"message_id": message_id})
            return Result.EXPIRED
        claimed = claim(session, message_id, now)
        if claimed is None and is_paused(session):
            # the sweep publishes it again once sending resumes
            mark_unpublished(session, [message_id])
            return Result.PAUSED
    if claimed is None:
        return Result.SKIPPED

    outcome = call_gateway(client, claimed, settings)
    decision = decide(
        outcome,
        kind=claimed.kind,
        attempts=claimed.attempt,
        prior_ambiguous=claimed.prior_ambiguous,
        settings=settings,
        rng=rng,
    )
    return record(claimed, decision, db=db, publisher=publisher)


def call_gateway(client: Sender, msg: ClaimedMessage, settings: Settings) -> int | FiboError:
    """The success code, or the error the attempt ended with."""
    try:
        receipt = client.send(
            format_for_gateway(msg.recipient, settings.phone_format),
            msg.text,
            sender=msg.sender or settings.sender_name,
            service_type=msg.service_type,
        )
    except FiboError as exc:
        return exc
    except Exception as exc:
        # a bug, not the gateway: the request may have left, so treat it as unknown
        log.exception("unexpected error from the gateway client")
        return AmbiguousError(f"unexpected client error ({type(exc).__name__})")
    code: int = getattr(receipt, "code", 200)
    return code


def record(
    msg: ClaimedMessage, decision: Decision, *, db: Database, publisher: Publishes
) -> Result:
    """Write the decision; publish a short retry with a countdown."""
    now = utcnow()
    due: datetime | None = None
    countdown: float | None = None
    if decision.status is Status.RETRYING:
        assert decision.delay is not None
        due = now + timedelta(seconds=decision.delay)
        if decision.delay <= COUNTDOWN_MAX_SECONDS:
            countdown = decision.delay
    transition = Transition(
        status=decision.status,
        code=decision.code,
        error=decision.error,
        next_attempt_at=due,
        # a countdown publish counts from the due time; a long wait is left to the sweep
        published_at=due if countdown is not None else None,
        ambiguous=decision.ambiguous,
        failure_class=decision.failure_class,
        meaning=decision.meaning,
    )
    with db.transaction() as session:
        if decision.account_wide and not pause(
            session,
            code=decision.code,
            reason=decision.meaning or "account refused",
            message_id=msg.id,
            now=now,
        ):
            # another message paused the account first: this one waits, attempt not counted
            give_back(session, msg.id, msg.attempt, now)
            return Result.PAUSED
        if decision.account_wide:
            log.error(
                "account-wide code %s (%s): sending paused; message %d dead-lettered",
                decision.code,
                decision.meaning,
                msg.id,
                extra={"message_id": msg.id, "code": decision.code},
            )
            raise_alert(
                session,
                kind="paused",
                key="paused",
                message=(
                    f"sending paused: FIBO code {decision.code} ({decision.meaning}) on message "
                    f"{msg.id}; "
                    + (
                        "resumes by itself when a balance poll sees money"
                        if decision.code == INSUFFICIENT_BALANCE
                        else "run `fibosms resume` once the account is fixed"
                    )
                ),
                now=now,
            )
        if not finish_attempt(session, msg.id, msg.attempt, transition, now):
            log.warning(
                "claim lost: the row was recovered by the sweep during the call",
                extra={"message_id": msg.id, "attempt": msg.attempt},
            )
            return Result.LOST_CLAIM
    log.info(
        "attempt %d of message %d to %s: %s%s",
        msg.attempt,
        msg.id,
        mask_phone(msg.recipient),
        decision.status.value,
        f" (code {decision.code})" if decision.code is not None else "",
        extra={
            "message_id": msg.id,
            "attempt": msg.attempt,
            "code": decision.code,
            "status": decision.status.value,
        },
    )
    if countdown is not None:
        failed = publisher.publish([(msg.id, msg.queue)], countdown=countdown)
        if failed:
            with db.transaction() as session:
                mark_unpublished(session, failed)
    return Result(decision.status.value)
