"""FIBOSMS_CALL_DEADLINE_SECONDS: the whole of one gateway call, bounded."""

from __future__ import annotations

import pytest

from worker.settings import Settings, SettingsError


def test_the_deadline_defaults_to_connect_plus_read_timeout() -> None:
    settings = Settings.from_env({})
    assert settings.call_deadline_seconds == 35.0
    assert settings.call_deadline_seconds == (
        settings.connect_timeout_seconds + settings.read_timeout_seconds
    )


@pytest.mark.parametrize("raw", ["1", "12.5", "600"])
def test_the_deadline_is_read_in_seconds(raw: str) -> None:
    # a sending timeout with room for the longest deadline (start-up checks the two together)
    settings = Settings.from_env(
        {"FIBOSMS_CALL_DEADLINE_SECONDS": raw, "FIBOSMS_SENDING_TIMEOUT_SECONDS": "700"}
    )
    assert settings.call_deadline_seconds == float(raw)


@pytest.mark.parametrize("raw", ["0", "0.5", "-3", "600.5", "inf", "nan", "1e9", "soon"])
def test_a_deadline_out_of_bounds_stops_start_up_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FIBOSMS_CALL_DEADLINE_SECONDS": raw})
    assert "FIBOSMS_CALL_DEADLINE_SECONDS" in str(info.value)
