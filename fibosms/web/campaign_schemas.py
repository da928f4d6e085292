"""The JSON shapes of campaigns and the suppression list in the API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from fibosms.web.schemas import MAX_PHONE_LENGTH, MAX_TEXT_LENGTH, When
from producer.validate import MAX_SENDER_LENGTH

#: characters of a campaign's name (the column's width)
MAX_CAMPAIGN_NAME = 64
#: rows of one JSON campaign request (the 1 MiB body limit usually comes first)
MAX_CAMPAIGN_ROWS = 100_000
#: numbers of one suppression request
MAX_SUPPRESS = 10_000
#: characters of a suppression's reason
MAX_REASON = 200
#: characters of a column's name in a JSON row
MAX_COLUMN = 64

CampaignName = Annotated[str, Field(min_length=1, max_length=MAX_CAMPAIGN_NAME)]
Cell = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]
Column = Annotated[str, Field(min_length=1, max_length=MAX_COLUMN)]


class CampaignIn(BaseModel):
    """A campaign as JSON rows: each row a `phone` and either a `text` or the columns the
    `text` template names (`{name}`); the same checks as `fibosms campaign send`."""

    model_config = ConfigDict(extra="forbid")

    name: CampaignName = Field(description="one message per number and campaign name")
    rows: list[dict[Column, Cell]] = Field(
        min_length=1, max_length=MAX_CAMPAIGN_ROWS,
        examples=[[{"phone": "0912345678", "name": "An"}]],
    )
    text: str | None = Field(None, max_length=MAX_TEXT_LENGTH,
                             description="a template with {column} placeholders; "
                             "default: each row's `text`",
                             examples=["[QC] Chao {name}, giam 20% hom nay"])
    sender: str | None = Field(None, max_length=MAX_SENDER_LENGTH)
    send_at: When | None = Field(None, description="not sent before this time")
    dry_run: StrictBool = Field(False, description="check and summarise; accept nothing")
    skip_invalid: StrictBool = Field(False, description="accept the good rows even when "
                                     "some are bad")


class RowErrorOut(BaseModel):
    line: int = Field(description="CSV: the file's line (the header is line 1); "
                      "JSON: the row's index in `rows`")
    reason: str


class CampaignReportOut(BaseModel):
    """What was (or, with `dry_run`, would be) accepted; as `fibosms campaign send --json`."""

    campaign: str
    rows: int
    accepted: int
    invalid: int
    suppressed: int
    duplicates: int
    segments: int
    errors: list[RowErrorOut]


class CampaignOut(BaseModel):
    """A campaign as `fibosms campaign show --json` shows it."""

    campaign: str
    created_at: str
    cancelled_at: str | None
    messages: int
    counts: dict[str, int] = Field(description="messages by status")
    holds: dict[str, int] = Field(description="queued messages held back, by reason")
    segments: int
    waiting: int
    sent_per_minute: float
    estimated_end: str | None


class CampaignList(BaseModel):
    items: list[CampaignOut]


class CancelOut(BaseModel):
    campaign: str
    cancelled: int = Field(description="messages not yet sent, now `cancelled`")


class SuppressIn(BaseModel):
    """Numbers to list, in any written form."""

    model_config = ConfigDict(extra="forbid")

    phones: list[Annotated[str, Field(max_length=MAX_PHONE_LENGTH)]] = Field(
        min_length=1, max_length=MAX_SUPPRESS, examples=[["0912345678"]])
    reason: str | None = Field(None, max_length=MAX_REASON)


class SuppressOut(BaseModel):
    added: int = Field(description="numbers newly listed")
    given: int = Field(description="distinct numbers in the request")


class SuppressionOut(BaseModel):
    phone: str = Field(description="national form")
    reason: str | None
    source: str = Field(description="gateway, operator, import or api")
    created_at: str


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next: str | None = Field(description="the cursor of the next page; null on the last")
