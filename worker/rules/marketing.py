"""The advertising rules of Decree 91/2020/ND-CP, Article 13, as pure functions.

An advertising (``marketing``) SMS may be sent only inside the daily window
(``FIBOSMS_MARKETING_HOURS``, Vietnam local time), at most ``FIBOSMS_MARKETING_DAILY_CAP`` of
them to one number within any 24 hours, and each must start with its label (``[QC]`` or
``[AD]``). The ledger enforces the window and the cap at the claim (``worker.ledger.marketing``);
the label is applied at the door. See ``docs/campaigns.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from worker.errors import ValidationError
from worker.settings import Settings

#: the provider's and the decree's clock: Vietnam, UTC+7 without daylight saving
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
#: the labels an advertising text may start with
LABELS = ("[QC]", "[AD]")
#: what ``add`` puts in front of an unlabelled text
LABEL_PREFIX = "[QC] "
#: the rolling window of the daily cap
CAP_WINDOW = timedelta(hours=24)
#: messages per second a released hold is spread at when no rate limit is set
RELEASE_RATE_DEFAULT = 20.0

LabelMode = Literal["add", "require", "off"]


@dataclass(frozen=True)
class Window:
    """The daily sending window, in minutes after local midnight: [start, end)."""

    start: int
    end: int

    @property
    def always(self) -> bool:
        return self.start == 0 and self.end == 24 * 60

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_window(text: str) -> Window:
    """``07:00-22:00`` → a :class:`Window`; ``ValueError`` naming the problem otherwise.

    A start after the end wraps past midnight (``22:00-06:00``); ``00:00-24:00`` is always.
    """
    try:
        first, second = text.strip().split("-")
        start, end = _minutes(first), _minutes(second)
    except ValueError:
        raise ValueError(f"not HH:MM-HH:MM: {text!r}") from None
    if start == 24 * 60 or start == end:
        raise ValueError(f"an empty window: {text!r}")
    return Window(start, end)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.strip().split(":")
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m != 0):
        raise ValueError(hhmm)
    return h * 60 + m


def _local_minute(moment: datetime) -> tuple[datetime, float]:
    local = moment.astimezone(VIETNAM)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight, (local - midnight).total_seconds() / 60


def in_window(moment: datetime, window: Window) -> bool:
    """Whether an advertising SMS may go at ``moment`` (aware)."""
    if window.always:
        return True
    _, minute = _local_minute(moment)
    if window.start < window.end:
        return window.start <= minute < window.end
    return minute >= window.start or minute < window.end


def next_opening(moment: datetime, window: Window) -> datetime:
    """When the window next opens after ``moment`` (``moment`` itself when it is open)."""
    if in_window(moment, window):
        return moment
    midnight, minute = _local_minute(moment)
    opening = midnight + timedelta(minutes=window.start)
    if minute >= window.start:
        opening += timedelta(days=1)
    return opening.astimezone(moment.tzinfo)


def window_minutes(window: Window) -> int:
    """How long the window stays open each day, in minutes."""
    return (window.end - window.start) % (24 * 60) or 24 * 60


def release_times(
    opening: datetime, count: int, *, already_held: int, rate: float | None, window: Window
) -> list[datetime]:
    """Due times for ``count`` messages held until ``opening``, spread at ``rate`` per second.

    ``already_held`` messages wait for the same opening ahead of them, so a later hold
    queues behind them instead of landing on 07:00:00 with everyone else. The spread never
    runs past the window's end (a minute before it): what does not fit is claimed and
    held again.
    """
    per_second = rate or RELEASE_RATE_DEFAULT
    room = max(0.0, window_minutes(window) * 60.0 - 60.0)
    return [
        opening + timedelta(seconds=min(room, (already_held + i) / per_second))
        for i in range(count)
    ]


def cap_allows(counted: int, cap: int) -> int:
    """How many more advertising SMS one number may get now (``cap`` 0: no cap)."""
    if cap == 0:
        return 1 << 30
    return max(0, cap - counted)


def cap_release(sent_times: Sequence[datetime], cap: int, now: datetime) -> datetime:
    """When one more advertising SMS may go to a number that has had ``sent_times``.

    Within the rolling 24 hours the number may have ``cap``; the next slot frees when the
    ``len - cap + 1``-th most recent send leaves the window. A send still in flight counts
    as happening ``now``.
    """
    recent = sorted(t for t in sent_times if t > now - CAP_WINDOW)
    if len(recent) < cap or cap == 0:
        return now
    return recent[len(recent) - cap] + CAP_WINDOW


def is_labelled(text: str) -> bool:
    return text.lstrip().upper().startswith(LABELS)


def apply_label(text: str, mode: LabelMode) -> str:
    """The text as it must go out under ``mode``; ValidationError when ``require`` refuses."""
    if mode == "off" or not text.strip():
        return text  # an empty text is refused by the text rules, not hidden by a label
    if is_labelled(text):
        return text.lstrip()
    if mode == "require":
        raise ValidationError(
            "text", "advertising text must start with [QC] or [AD] (FIBOSMS_MARKETING_LABEL)"
        )
    return LABEL_PREFIX + text.lstrip()


def local_time(moment: datetime) -> time:
    """``moment`` on Vietnam's clock (for messages shown to operators)."""
    return moment.astimezone(VIETNAM).time()


@dataclass(frozen=True)
class MarketingPolicy:
    """What the claim enforces: the window, the cap, the kinds the suppression list stops."""

    window: Window
    #: advertising SMS per number per rolling 24 hours; 0: no cap
    daily_cap: int
    suppress_kinds: frozenset[str]
    #: messages per second a released hold is spread at (the rate limit when there is one)
    release_rate: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketingPolicy:
        return cls(
            window=parse_window(settings.marketing_hours),
            daily_cap=settings.marketing_daily_cap,
            suppress_kinds=settings.suppress_kinds,
            release_rate=settings.rate_limit,
        )


#: the decree's own numbers: what the ledger enforces when a caller names no policy
DEFAULT_POLICY = MarketingPolicy(
    window=parse_window("07:00-22:00"), daily_cap=3, suppress_kinds=frozenset({"marketing"})
)
