"""The JSON shapes of the API: request bodies, answers, and their OpenAPI schemas.

Types only: whether a phone number or a text is acceptable is the producer's rule (the
same as ``enqueue_sms``), so a 422 says the same thing whichever door a message came in by.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from producer.validate import EARLIEST, LATEST, MAX_KEY_LENGTH, MAX_SENDER_LENGTH

#: the most messages one batch request may carry
MAX_BATCH = 10_000
#: characters: far above the longest text accepted (10 parts), below the body limit
MAX_TEXT_LENGTH = 4_000
MAX_PHONE_LENGTH = 64
MAX_ID = 2**63 - 1
MAX_CODE = 2**31 - 1

KindName = Literal["otp", "transactional", "marketing"]
StatusName = Literal[
    "queued", "sending", "retrying", "sent", "dead", "expired", "suppressed", "cancelled"
]


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC")
    return value


#: an ISO 8601 time with its offset, within the range the ledger holds
When = Annotated[AwareDatetime, AfterValidator(_in_range)]
MessageId = Annotated[int, Field(ge=1, le=MAX_ID)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    sender: str | None = Field(None, max_length=MAX_SENDER_LENGTH,
                               description="brand name; default FIBOSMS_SENDER_NAME")
    send_at: When | None = Field(None, description="not sent before this time")
    expires_at: When | None = Field(None, description="not sent after this time")
    unicode: StrictBool | None = Field(
        None, description="null: chosen from the text; true: Unicode; false: plain")
    strip_diacritics: StrictBool | None = Field(
        None, description="remove Vietnamese diacritics; default FIBOSMS_STRIP_DIACRITICS")


class MessageIn(_Options):
    """One message."""

    phone: str = Field(max_length=MAX_PHONE_LENGTH,
                       description="a Vietnamese mobile number in any written form",
                       examples=["0912345678", "+84 912 345 678"])
    text: str = Field(max_length=MAX_TEXT_LENGTH, examples=["Ma OTP cua ban la 123456"])
    kind: KindName = "transactional"


class BatchItem(_Options):
    phone: str = Field(max_length=MAX_PHONE_LENGTH, examples=["0912345678"])
    text: str = Field(max_length=MAX_TEXT_LENGTH, examples=["Giam 50% hom nay"])
    kind: KindName | None = None
    idempotency_key: str | None = Field(None, max_length=MAX_KEY_LENGTH)


class BatchIn(BaseModel):
    """Up to 10,000 messages, accepted all or nothing."""

    model_config = ConfigDict(extra="forbid")

    kind: KindName = "marketing"
    sender: str | None = Field(None, max_length=MAX_SENDER_LENGTH)
    messages: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchOut(BaseModel):
    ids: list[int]


class MessageOut(BaseModel):
    """A message as ``fibosms status --json`` shows it: the number masked, no text."""

    id: int
    status: str
    kind: str
    queue: str
    recipient: str
    sender: str | None
    service_type: int
    segments: int
    attempts: int
    ambiguous_attempts: int
    last_code: int | None
    last_error: str | None
    idempotency_key: str | None
    created_at: str | None
    next_attempt_at: str | None
    first_attempt_at: str | None
    sent_at: str | None
    expires_at: str | None
    campaign: str | None = Field(None, description="the campaign it belongs to")
    hold_reason: str | None = Field(
        None, description="why a queued marketing message waits: quiet_hours or daily_cap"
    )


class MessagePage(BaseModel):
    items: list[MessageOut]
    next: str | None = Field(description="the cursor of the next page; null on the last")


class FailureOut(BaseModel):
    """A dead letter as ``fibosms failures list --json`` shows it."""

    model_config = ConfigDict(populate_by_name=True)

    failure_id: int
    message_id: int
    code: int | None
    meaning: str
    class_: str = Field(alias="class")
    attempts: int
    last_error: str | None
    failed_at: str | None
    replayed_at: str | None
    replayed_by: str | None
    recipient: str | None = None


class FailurePage(BaseModel):
    items: list[FailureOut]
    next: str | None


class ReplayIn(BaseModel):
    """Either message ids or a FIBO code (every open failure with it), not both."""

    model_config = ConfigDict(extra="forbid")

    ids: list[MessageId] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    code: int | None = Field(None, ge=-MAX_CODE - 1, le=MAX_CODE)


class ReplayOut(BaseModel):
    replayed: list[int]
    not_dead: list[int]


class AccountOut(BaseModel):
    balance: int | float | None
    balance_polled_at: str | None
    paused: bool
    pause_code: int | None
    pause_reason: str | None
    paused_since: str | None
    resumes: str | None
    today: dict[str, object]


class ResumeOut(BaseModel):
    resumed: bool
    published: int


class HealthOut(BaseModel):
    healthy: bool
    checks: dict[str, dict[str, object]]


class FieldError(BaseModel):
    field: str = Field(description="the input, as a path: `phone`, `messages[3].phone`")
    reason: str


class Problem(BaseModel):
    """An error (RFC 9457), served as `application/problem+json`."""

    type: str = Field(description="a relative URI naming the problem, e.g. `/problems/invalid`")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(None, description="on 422: each field refused")
    message_id: int | None = Field(None, description="on 409: the message holding the key")
    report: dict[str, object] | None = Field(
        None, description="a refused campaign: the summary of what was checked")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` entries for these statuses, each a :class:`Problem`."""
    words = {
        400: "the body cannot be read (not UTF-8, nested too deep) or its length is not a number",
        401: "no API key, or a wrong or revoked one",
        403: "the key lacks the scope",
        404: "not found",
        409: "the idempotency key names a message with other content",
        413: "the body is over 1 MiB",
        415: "the body is not JSON (nor CSV where CSV is taken)",
        422: "the request is not valid: `errors` names each field",
        429: "past the key's request rate: see `Retry-After`",
        503: "the ledger is unavailable: see `Retry-After`",
    }
    return {
        status: {
            "description": words.get(status, "an error"),
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }},
        }
        for status in statuses
    }
