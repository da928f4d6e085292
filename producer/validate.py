"""A caller's arguments → a row for ``sms_messages``, or a ValidationError naming the field."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.errors import ValidationError
from worker.kinds import QUEUE_OF, Kind
from worker.rules.marketing import apply_label
from worker.rules.phone import normalize_phone
from worker.rules.text import prepare_text
from worker.settings import KINDS, Settings

MAX_KEY_LENGTH = 200
MAX_SENDER_LENGTH = 64
#: the times a send_at / expires_at may name: the ledger stores them, and the pipeline adds
#: delays and days to them, without leaving what a datetime can hold
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)

#: the keyword options a message may carry, beside phone and text
OPTIONS = frozenset(
    {
        "sender", "kind", "idempotency_key", "unicode", "send_at", "expires_at",
        "strip_diacritics", "campaign",
    }
)
MAX_CAMPAIGN_LENGTH = 64


@dataclass(frozen=True)
class NewMessage:
    """A validated message, ready to insert."""

    recipient: str
    text: str
    sender: str | None
    service_type: int
    segments: int
    kind: str
    queue: str
    idempotency_key: str | None
    send_at: datetime | None
    expires_at: datetime | None
    campaign: str | None = None

    def row(self, now: datetime, *, suppressed: bool = False) -> dict[str, Any]:
        """The row to insert; ``suppressed``: its number is listed for its kind, so it is
        recorded as such and never published."""
        due = self.send_at if self.send_at is not None and self.send_at > now else now
        if suppressed:
            return {
                **self.row(now),
                "status": "suppressed",
                "published_at": None,
                "last_error": "number on the suppression list",
            }
        return {
            "idempotency_key": self.idempotency_key,
            "recipient": self.recipient,
            "text": self.text,
            "sender": self.sender,
            "service_type": self.service_type,
            "segments": self.segments,
            "kind": self.kind,
            "queue": self.queue,
            "status": "queued",
            "attempts": 0,
            "ambiguous_attempts": 0,
            "next_attempt_at": due,
            "expires_at": self.expires_at,
            # published right after the commit unless it is scheduled for later
            "published_at": now if due == now else None,
            "created_at": now,
            "updated_at": now,
            "campaign": self.campaign,
            "last_error": None,
            "hold_reason": None,
        }

    @property
    def publish_now(self) -> bool:
        return self.send_at is None


def one_statement(m: NewMessage, settings: Settings) -> bool:
    """Whether recording ``m`` is one INSERT and nothing else: due now, no idempotency key to
    look up, no campaign, no suppression list to consult, no marketing hours."""
    return (
        m.publish_now
        and m.idempotency_key is None
        and m.campaign is None
        and m.kind not in settings.suppress_kinds
        and m.kind != Kind.MARKETING
    )


def validate(
    phone: Any,
    text: Any,
    *,
    settings: Settings,
    now: datetime,
    sender: Any = None,
    kind: Any = "transactional",
    idempotency_key: Any = None,
    unicode: Any = None,
    send_at: Any = None,
    expires_at: Any = None,
    strip_diacritics: Any = None,
    campaign: Any = None,
) -> NewMessage:
    """Check and normalize one message.

    Marketing text gets its advertising label as ``FIBOSMS_MARKETING_LABEL`` says, before
    its parts are counted.
    """
    if kind not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if unicode is not None and not isinstance(unicode, bool):
        raise ValidationError("unicode", "must be true, false or None (choose automatically)")
    if strip_diacritics is None:
        strip_diacritics = settings.strip_diacritics
    elif not isinstance(strip_diacritics, bool):
        raise ValidationError("strip_diacritics", "must be true or false")

    recipient = normalize_phone(phone)
    if kind == Kind.MARKETING and isinstance(text, str):
        text = apply_label(text, settings.marketing_label)
    prepared = prepare_text(
        text,
        unicode=unicode,
        strip_diacritics=strip_diacritics,
        max_segments=settings.max_segments,
    )
    return NewMessage(
        recipient=recipient,
        text=prepared.text,
        sender=_sender(sender if sender is not None else settings.sender_name),
        service_type=prepared.service_type,
        segments=prepared.segments,
        kind=kind,
        queue=QUEUE_OF[Kind(kind)],
        idempotency_key=_key(idempotency_key),
        send_at=_when("send_at", send_at),
        expires_at=_expiry(expires_at, send_at, now),
        campaign=_campaign(campaign),
    )


def _printable(field: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > limit:
        raise ValidationError(field, f"must be at most {limit} characters, got {len(value)}")
    for pos, ch in enumerate(value):
        if unicodedata.category(ch).startswith("C"):
            raise ValidationError(field, f"control or invisible character at position {pos}")
    return value


def _sender(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("sender", "must be a string")
    return _printable("sender", value, MAX_SENDER_LENGTH)


def _campaign(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("campaign", "must be a string")
    return _printable("campaign", value, MAX_CAMPAIGN_LENGTH)


def _key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("idempotency_key", "must be a string")
    return _printable("idempotency_key", value, MAX_KEY_LENGTH)


def _when(field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware (a naive time is ambiguous)")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= LATEST:
        raise ValidationError(
            field, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC"
        )
    return value


def _expiry(value: Any, send_at: Any, now: datetime) -> datetime | None:
    expires = _when("expires_at", value)
    if expires is None:
        return None
    if expires <= now:
        raise ValidationError("expires_at", "is already in the past")
    if isinstance(send_at, datetime) and send_at.tzinfo is not None and expires <= send_at:
        raise ValidationError("expires_at", "must be after send_at")
    return expires
