"""The advertising rules as pure functions: the window, the release spread, the cap, the label.

Times are given explicitly (Vietnam is UTC+7): no test depends on when it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producer.validate import validate
from worker.errors import ValidationError
from worker.rules.marketing import (
    MarketingPolicy,
    apply_label,
    cap_allows,
    cap_release,
    in_window,
    is_labelled,
    next_opening,
    parse_window,
    release_times,
)
from worker.settings import Settings

DAYTIME = parse_window("07:00-22:00")


def vn(hour: int, minute: int = 0, day: int = 28) -> datetime:
    """A moment given on Vietnam's clock, as the aware UTC time the pipeline uses."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


@pytest.mark.parametrize(
    ("hour", "minute", "open_"),
    [(6, 59, False), (7, 0, True), (12, 0, True), (21, 59, True), (22, 0, False), (0, 0, False)],
)
def test_the_window_is_read_on_vietnam_clock(hour: int, minute: int, open_: bool) -> None:
    # Given the decree's window, When a moment is checked, Then Vietnam's clock decides
    assert in_window(vn(hour, minute), DAYTIME) is open_


def test_a_campaign_at_21_50_stops_at_22_and_resumes_at_07_next_day() -> None:
    assert in_window(vn(21, 50), DAYTIME)
    assert next_opening(vn(21, 50), DAYTIME) == vn(21, 50)
    assert next_opening(vn(22, 0), DAYTIME) == vn(7, 0, day=29)
    assert next_opening(vn(23, 30), DAYTIME) == vn(7, 0, day=29)
    # after midnight, the same morning
    assert next_opening(vn(3, 0, day=29), DAYTIME) == vn(7, 0, day=29)


def test_a_window_may_wrap_midnight_and_the_whole_day_is_always_open() -> None:
    night = parse_window("22:00-06:00")
    assert in_window(vn(23), night) and in_window(vn(5, 59), night)
    assert not in_window(vn(6), night) and not in_window(vn(12), night)
    assert next_opening(vn(12), night) == vn(22)
    always = parse_window("00:00-24:00")
    assert all(in_window(vn(h), always) for h in range(24))


@pytest.mark.parametrize("bad", ["7-22", "07:00", "25:00-26:00", "07:00-07:00", "07:60-22:00"])
def test_a_malformed_window_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|empty"):
        parse_window(bad)


def test_released_holds_are_spread_at_the_rate_behind_those_already_waiting() -> None:
    opening = vn(7)
    times = release_times(opening, 4, already_held=10, rate=2.0, window=DAYTIME)
    assert times == [opening + timedelta(seconds=s) for s in (5.0, 5.5, 6.0, 6.5)]
    # never past the window's end
    late = release_times(opening, 1, already_held=10**9, rate=1.0, window=DAYTIME)
    assert late[0] == vn(21, 59)


def test_the_cap_counts_what_was_sent_or_is_in_flight() -> None:
    assert cap_allows(0, 3) == 3
    assert cap_allows(2, 3) == 1
    assert cap_allows(3, 3) == 0
    assert cap_allows(5, 3) == 0
    assert cap_allows(100, 0) > 100  # 0: no cap


def test_a_held_message_goes_when_the_oldest_counted_send_leaves_the_24_hours() -> None:
    now = vn(12)
    sends = [now - timedelta(hours=20), now - timedelta(hours=5), now - timedelta(hours=1)]
    assert cap_release(sends, 3, now) == now + timedelta(hours=4)
    # one too many (a race before this rule): it takes two to leave the window
    assert cap_release([*sends, now], 3, now) == now + timedelta(hours=19)
    assert cap_release(sends[1:], 3, now) == now
    # sends older than 24 hours do not count
    assert cap_release([now - timedelta(hours=30), *sends[1:]], 3, now) == now


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Giam gia 50%", "[QC] Giam gia 50%"),
        ("[QC] Giam gia", "[QC] Giam gia"),
        ("[AD] Sale", "[AD] Sale"),
        ("[qc]Sale", "[qc]Sale"),
        ("  Sale", "[QC] Sale"),
        ("QC Sale", "[QC] QC Sale"),
    ],
)
def test_add_puts_the_label_first_unless_it_is_there(text: str, expected: str) -> None:
    assert apply_label(text, "add") == expected
    assert is_labelled(apply_label(text, "add"))


def test_require_refuses_unlabelled_text_and_off_leaves_it() -> None:
    with pytest.raises(ValidationError) as caught:
        apply_label("Giam gia", "require")
    assert caught.value.field == "text"
    assert apply_label("[AD] ok", "require") == "[AD] ok"
    assert apply_label("Giam gia", "off") == "Giam gia"


def test_the_policy_comes_from_the_settings() -> None:
    s = Settings.from_env({
        "FIBOSMS_MARKETING_HOURS": "08:00-20:30",
        "FIBOSMS_MARKETING_DAILY_CAP": "2",
        "FIBOSMS_SUPPRESS_KINDS": "marketing,transactional",
        "FIBOSMS_RATE_LIMIT": "5",
    })
    policy = MarketingPolicy.from_settings(s)
    assert str(policy.window) == "08:00-20:30"
    assert policy.daily_cap == 2
    assert policy.suppress_kinds == {"marketing", "transactional"}
    assert policy.release_rate == 5


def test_the_defaults_are_the_decrees() -> None:
    s = Settings.from_env({})
    assert (s.marketing_hours, s.marketing_daily_cap, s.marketing_label) == (
        "07:00-22:00", 3, "add"
    )
    assert s.suppress_kinds == {"marketing"}


def test_the_label_is_added_at_the_door_and_counted_in_the_parts() -> None:
    # Given a plain text of exactly one part (160 GSM characters)
    text = "x" * 160
    at = datetime(2026, 11, 28, tzinfo=UTC)
    s = Settings.from_env({})
    # When it is transactional it stays one part; as marketing the label makes two
    assert validate("0912345678", text, settings=s, now=at).segments == 1
    labelled = validate("0912345678", text, settings=s, now=at, kind="marketing")
    assert labelled.text == "[QC] " + text
    assert labelled.segments == 2
    # and `require` refuses it at the door, naming the field
    strict = Settings.from_env({"FIBOSMS_MARKETING_LABEL": "require"})
    with pytest.raises(ValidationError) as caught:
        validate("0912345678", text, settings=strict, now=at, kind="marketing")
    assert caught.value.field == "text"
