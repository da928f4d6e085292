"""The provider's day: Vietnam time (Asia/Ho_Chi_Minh, UTC+7), not UTC."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


def vietnam_day(moment: datetime) -> date:
    """The Vietnam-local date of an aware ``moment``."""
    return moment.astimezone(VIETNAM).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The aware instants [start, end) of a Vietnam-local day."""
    start = datetime.combine(day, time.min, tzinfo=VIETNAM)
    return start, start + timedelta(days=1)
