"""Parameter types that refuse, at parse time, what the ledger or the clock cannot hold."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from typing import Any

import click

#: a message id: the ledger's ids are signed 64-bit (BIGINT)
MESSAGE_ID = click.IntRange(1, 2**63 - 1)
#: a FIBO result code as the ledger stores it (INTEGER, signed 32-bit)
CODE = click.IntRange(-(2**31), 2**31 - 1)
#: the days a report can cover: its bounds in UTC stay representable
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)
#: seconds: one hour is longer than any probe should wait
MAX_TIMEOUT = 3600.0


class Seconds(click.ParamType[float]):
    """A finite number of seconds within [low, high] (no inf, no nan)."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value} is not between {self.low:g} and {self.high:g} seconds", param, ctx)
        return number


class Day(click.ParamType[date]):
    """A calendar day, YYYY-MM-DD, between FIRST_DAY and LAST_DAY."""

    name = "YYYY-MM-DD"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> date:
        if isinstance(value, date):
            return value
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"must be YYYY-MM-DD, got {value!r}", param, ctx)
        if not FIRST_DAY <= day <= LAST_DAY:
            self.fail(f"must be between {FIRST_DAY} and {LAST_DAY}, got {value}", param, ctx)
        return day


class Moment(click.ParamType[datetime]):
    """A date (midnight UTC) or an ISO time (UTC unless an offset is given), as UTC."""

    name = "DATE|TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text)
            if len(text) == 10:
                parsed = datetime.combine(date.fromisoformat(text), time.min)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            moment = parsed.astimezone(UTC)
        except ValueError:
            self.fail(f"must be a date (YYYY-MM-DD) or ISO time, got {text!r}", param, ctx)
        except OverflowError:
            self.fail(f"{text!r} is out of range", param, ctx)
        if not FIRST_DAY <= moment.date() <= LAST_DAY:
            self.fail(f"must be between {FIRST_DAY} and {LAST_DAY}, got {text!r}", param, ctx)
        return moment


DAY = Day()
MOMENT = Moment()
