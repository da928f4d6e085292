from datetime import UTC, date, datetime, timedelta, timezone

from worker.watch.days import day_bounds, vietnam_day

ICT = timezone(timedelta(hours=7))


def test_a_minute_either_side_of_vietnam_midnight_falls_on_two_days() -> None:
    before = datetime(2026, 11, 27, 23, 59, 30, tzinfo=ICT)
    after = datetime(2026, 11, 28, 0, 0, 30, tzinfo=ICT)
    assert vietnam_day(before) == date(2026, 11, 27)
    assert vietnam_day(after) == date(2026, 11, 28)
    # the same instants in UTC are both on the 27th: the provider's day is not UTC's
    assert before.astimezone(UTC).date() == after.astimezone(UTC).date() == date(2026, 11, 27)


def test_a_vietnam_day_runs_from_17_00_to_17_00_utc() -> None:
    start, end = day_bounds(date(2026, 11, 28))
    assert start.astimezone(UTC) == datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    assert end - start == timedelta(days=1)
