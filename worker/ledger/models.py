"""``sms_messages`` (the ledger), ``sms_failures`` (the dead letters) and their neighbours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.states import IN_FLIGHT, SENDABLE, HoldReason, Status

__all__ = [
    "IN_FLIGHT", "SENDABLE", "AccountState", "Alert", "Attempt", "BalancePoll", "Base",
    "Campaign", "CapCounter", "Failure", "HoldReason", "Message", "Reconciliation", "Status",
    "Suppression", "TotalsPoll", "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Message(Base):
    """One SMS handed to the pipeline, from acceptance to its final status."""

    __tablename__ = "sms_messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    #: national form, 10 digits (0912345678); the only place a full number is stored
    recipient: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(64))
    service_type: Mapped[int] = mapped_column(SmallInteger)
    segments: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: attempts whose outcome is unknown (timeout or cut after the request left)
    ambiguous_attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: every claim of the row, ever: the token a worker holds while it calls the gateway.
    #: Only a claim raises it and nothing lowers it, so a token never comes back.
    claims: Mapped[int] = mapped_column(Integer, default=0)
    #: ``attempts`` when the message was last replayed: the retry budget counts from here
    attempts_at_replay: Mapped[int] = mapped_column(Integer, default=0)
    #: the claim whose outcome the sweep guessed (it stalled in ``sending``); a definite
    #: answer that arrives late for that claim replaces the guess
    guessed_claim: Mapped[int | None] = mapped_column(Integer)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: when the message may next be sent (its due time while queued or retrying)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when its id was last handed to the broker (or the countdown's due time); NULL when
    #: a publish failed and the sweep must publish it
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when the current attempt began (status sending)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the campaign the message belongs to (``fibosms campaign send --name``)
    campaign: Mapped[str | None] = mapped_column(String(64))
    #: why a queued marketing message waits: quiet_hours or daily_cap; NULL otherwise
    hold_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_sms_messages_status_due", "status", "next_attempt_at"),
        Index("ix_sms_messages_campaign_status", "campaign", "status"),
        Index("ix_sms_messages_recipient_kind", "recipient", "kind"),
        Index("ix_sms_messages_sent_at", "sent_at"),
        Index("ix_sms_messages_created_at", "created_at"),
    )


class Suppression(Base):
    """A number that must get no message of the suppressed kinds (``FIBOSMS_SUPPRESS_KINDS``)."""

    __tablename__ = "sms_suppressions"

    #: national form, 10 digits, as in ``sms_messages.recipient``
    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    #: gateway (code 7), operator (``fibosms suppress add``), import (a CSV file), api
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Campaign(Base):
    """A named batch of marketing messages; cancelling it stops what was not yet sent."""

    __tablename__ = "sms_campaigns"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CapCounter(Base):
    """One row per number that got marketing: the lock the daily cap is counted under.

    A claim of marketing messages locks its numbers' rows (in key order) before it counts
    what those numbers had in the last 24 hours, so two workers never both take the last
    slot of a number.
    """

    __tablename__ = "sms_cap_counters"

    #: SHA-256 of the number in national form: the lock needs no number in clear
    number_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Failure(Base):
    """A dead letter: why a message stopped, kept after a replay as its history."""

    __tablename__ = "sms_failures"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sms_messages.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[int | None] = mapped_column(Integer)
    meaning: Mapped[str] = mapped_column(Text)
    #: transient (budget spent), permanent, account, or ambiguous (outcome unknown)
    cls: Mapped[str] = mapped_column("class", String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replayed_by: Mapped[str | None] = mapped_column(String(64))


class Attempt(Base):
    """One recorded outcome of a call that went (or may have gone) out: the attempt history.

    Written in the transaction that moves the row (``worker.ledger.claims``); a claim given
    back without a call writes none. The sweep's guess for a stalled call and the late
    definite answer that replaced it are two rows of the same claim.
    """

    __tablename__ = "sms_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("sms_messages.id", ondelete="CASCADE"), index=True
    )
    #: the claim token the call was made under (``sms_messages.claims`` at the claim)
    claim: Mapped[int] = mapped_column(Integer)
    #: the attempt's number over the row's whole life (1-based)
    attempt: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the status this outcome moved the row to
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[int | None] = mapped_column(Integer)
    #: the outcome is unknown (timeout, or cut after the request left)
    ambiguous: Mapped[bool] = mapped_column(Boolean)
    #: the sweep's guess for a stalled call, not the gateway's answer
    guessed: Mapped[bool] = mapped_column(Boolean)
    #: a definite answer that came after the sweep's guess and replaced it
    late: Mapped[bool] = mapped_column(Boolean)
    #: the same redacted text as ``sms_messages.last_error``
    error: Mapped[str | None] = mapped_column(Text)


class BalancePoll(Base):
    """One GetClientBalance answer (messages or VND, as the account counts)."""

    __tablename__ = "fibo_balance_history"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    balance: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TotalsPoll(Base):
    """One GetTotalMt answer, tagged with the Vietnam-local day it describes."""

    __tablename__ = "fibo_totals_history"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    success: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    pending: Mapped[int] = mapped_column(Integer)
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AccountState(Base):
    """One row: whether sending is paused for the account, and why."""

    __tablename__ = "fibo_account_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_code: Mapped[int | None] = mapped_column(Integer)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the message that met the account-wide code (the only one dead-lettered for it)
    paused_by_message: Mapped[int | None] = mapped_column(Id)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_by: Mapped[str | None] = mapped_column(String(64))


class Reconciliation(Base):
    """The latest comparison of one Vietnam-local day: our ledger against the gateway's."""

    __tablename__ = "fibo_reconciliations"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    local_sent: Mapped[int] = mapped_column(Integer)
    local_dead: Mapped[int] = mapped_column(Integer)
    local_in_flight: Mapped[int] = mapped_column(Integer)
    gateway_success: Mapped[int] = mapped_column(Integer)
    gateway_failed: Mapped[int] = mapped_column(Integer)
    gateway_pending: Mapped[int] = mapped_column(Integer)
    #: gateway accepted (success + failed + pending) minus our sent
    difference: Mapped[int] = mapped_column(Integer)
    mismatch: Mapped[bool] = mapped_column(Boolean)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Alert(Base):
    """A condition operators were told about; open until ``cleared_at``. One per open key."""

    __tablename__ = "fibo_alerts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    #: low_balance | mismatch | paused
    kind: Mapped[str] = mapped_column(String(32))
    #: the condition: "low_balance", "mismatch:2026-11-27", "paused"
    key: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when the webhook took it; NULL while it is still to be delivered
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # one open alert per condition, whatever raises it at once (migration 0008)
        Index(
            "uq_fibo_alerts_open_key", "key", unique=True,
            postgresql_where=text("cleared_at IS NULL"), sqlite_where=text("cleared_at IS NULL"),
        ),
    )
