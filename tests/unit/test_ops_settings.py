"""The operators' settings (log format, Flower credentials, metrics) and Flower's guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from fibosms.celeryapp.flower import auth_problem, normalize_args
from worker.settings import METRICS_PORT, Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.log_format == "text"
    assert s.flower_basic_auth == ()
    assert (s.metrics_port, s.metrics_window_seconds, s.worker_metrics_port) == (
        METRICS_PORT, 3600.0, 0
    )


def test_flower_listens_on_loopback_unless_told_otherwise() -> None:
    assert Settings.from_env({}).flower_address == "127.0.0.1"
    assert Settings.from_env({"FIBOSMS_FLOWER_ADDRESS": " 0.0.0.0 "}).flower_address == "0.0.0.0"


def test_a_wrong_flower_credentials_file_never_shows_its_content(tmp_path: Path) -> None:
    secret = tmp_path / "flower"
    secret.write_bytes(b"ops:Pw\xff-Secret")
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"FIBOSMS_FLOWER_BASIC_AUTH_FILE": str(secret)})
    assert str(err.value).startswith("FIBOSMS_FLOWER_BASIC_AUTH_FILE is not valid UTF-8")
    assert "Secret" not in str(err.value)


def test_flower_credentials_inline_and_from_a_file(tmp_path: Path) -> None:
    s = Settings.from_env({"FIBOSMS_FLOWER_BASIC_AUTH": "ops:pa:ss, viewer:Pw2"})
    assert s.flower_basic_auth == ("ops:pa:ss", "viewer:Pw2")
    secret = tmp_path / "flower"
    secret.write_text("ops:File-Pw-1\nviewer:File-Pw-2\n")
    s = Settings.from_env({"FIBOSMS_FLOWER_BASIC_AUTH_FILE": str(secret)})
    assert s.flower_basic_auth == ("ops:File-Pw-1", "viewer:File-Pw-2")
    # never shown
    assert "File-Pw" not in repr(s)
    assert s.redacted()["flower_basic_auth"] == ["ops:***", "viewer:***"]
    assert "File-Pw" not in str(s.redacted())


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"FIBOSMS_LOG_FORMAT": "xml"}, "FIBOSMS_LOG_FORMAT"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH": "ops"}, "FIBOSMS_FLOWER_BASIC_AUTH"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH": "ops:"}, "FIBOSMS_FLOWER_BASIC_AUTH"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH": ":pw"}, "FIBOSMS_FLOWER_BASIC_AUTH"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH": "a:b", "FIBOSMS_FLOWER_BASIC_AUTH_FILE": "/x"},
         "FIBOSMS_FLOWER_BASIC_AUTH_FILE"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH_FILE": "/nonexistent/flower"},
         "FIBOSMS_FLOWER_BASIC_AUTH_FILE"),
        ({"FIBOSMS_METRICS_PORT": "0"}, "FIBOSMS_METRICS_PORT"),
        ({"FIBOSMS_METRICS_WINDOW_SECONDS": "10"}, "FIBOSMS_METRICS_WINDOW_SECONDS"),
        ({"FIBOSMS_WORKER_METRICS_PORT": "-1"}, "FIBOSMS_WORKER_METRICS_PORT"),
        ({"FIBOSMS_WORKER_METRICS_PORT": "65536"}, "FIBOSMS_WORKER_METRICS_PORT"),
        ({"FIBOSMS_METRICS_WINDOW_SECONDS": "inf"}, "FIBOSMS_METRICS_WINDOW_SECONDS"),
        ({"FIBOSMS_FLOWER_ADDRESS": "0.0.0.0 5555"}, "FIBOSMS_FLOWER_ADDRESS"),
        ({"FIBOSMS_FLOWER_BASIC_AUTH_FILE": "/dev/zero"}, "FIBOSMS_FLOWER_BASIC_AUTH_FILE"),
    ],
)
def test_a_bad_value_names_its_variable_and_not_the_password(
    env: dict[str, str], name: str
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert name in str(err.value)
    assert "pw" not in str(err.value).replace("password", "")


def test_flower_needs_some_authentication() -> None:
    none = Settings.from_env({})
    ours = Settings.from_env({"FIBOSMS_FLOWER_BASIC_AUTH": "ops:pw"})
    assert auth_problem(none, [], {}) is not None
    assert auth_problem(ours, [], {}) is None
    # Flower's own ways count too
    assert auth_problem(none, ["--basic-auth=a:b"], {}) is None
    assert auth_problem(none, ["--basic_auth=a:b"], {}) is None
    assert auth_problem(none, ["--auth=.*@example.com"], {}) is None
    assert auth_problem(none, [], {"FLOWER_BASIC_AUTH": "a:b"}) is None
    assert auth_problem(none, ["--port=5555"], {"FLOWER_PORT": "1"}) is not None


def test_flower_options_take_either_spelling() -> None:
    assert normalize_args(["--port", "5555", "--address=0.0.0.0", "--debug", "--url_prefix",
                           "flower"]) == [
        "--port=5555", "--address=0.0.0.0", "--debug", "--url_prefix=flower"
    ]
