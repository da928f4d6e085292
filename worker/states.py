"""A message's states, and the change an attempt's outcome asks of its row.

Pure values: the ledger (``worker.ledger``) stores them, the decision after an attempt
(``worker.decide``) produces them. Who may move a row from which state to which is in
``docs/architecture.md``, "States".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """``sms_messages.status``."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DEAD = "dead"
    EXPIRED = "expired"
    #: its number is on the suppression list for its kind; never sent (final)
    SUPPRESSED = "suppressed"
    #: its campaign was cancelled before it was sent (final)
    CANCELLED = "cancelled"


class HoldReason(StrEnum):
    """``sms_messages.hold_reason``: why a ``queued`` marketing message waits (not failed)."""

    QUIET_HOURS = "quiet_hours"
    DAILY_CAP = "daily_cap"


#: statuses a worker may claim
SENDABLE = (Status.QUEUED.value, Status.RETRYING.value)
#: statuses a message can still leave: accepted and not yet final
IN_FLIGHT = (Status.QUEUED.value, Status.SENDING.value, Status.RETRYING.value)


@dataclass(frozen=True)
class Transition:
    """The next state of a row that is in ``sending`` under a claim."""

    status: Status
    code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    published_at: datetime | None = None
    ambiguous: bool = False
    failure_class: str | None = None
    meaning: str | None = None
    #: the outcome is the sweep's guess for a stalled attempt, not the gateway's answer
    guessed: bool = False
