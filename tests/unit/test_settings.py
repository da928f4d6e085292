from pathlib import Path

import pytest

from worker.settings import DEMO_CLIENT_NO, FIBO_API_URL, Settings, SettingsError


def test_defaults_run_on_sqlite_and_the_sandbox_when_no_account_is_set() -> None:
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/fibosms.db")
    assert s.broker_url.startswith("sqla+sqlite:///")
    assert s.using_sandbox and s.client_no == DEMO_CLIENT_NO
    assert s.api_url == "http://127.0.0.1:8077"
    assert (s.max_attempts, s.retry_base_seconds, s.retry_max_seconds) == (8, 30.0, 3600.0)
    assert (s.sweep_seconds, s.sending_timeout_seconds) == (30.0, 120.0)


def test_an_account_switches_to_the_real_gateway() -> None:
    s = Settings.from_env({"FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_CLIENT_PASS": "pw"})
    assert s.api_url == FIBO_API_URL and not s.using_sandbox


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("file-Secret-99\n")
    s = Settings.from_env({"FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_CLIENT_PASS_FILE": str(secret)})
    assert s.client_pass == "file-Secret-99"
    assert "file-Secret-99" not in repr(s)
    assert "file-Secret-99" not in str(s.redacted())


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"FIBOSMS_MAX_ATTEMPTS": "eight"}, "FIBOSMS_MAX_ATTEMPTS"),
        ({"FIBOSMS_MAX_ATTEMPTS": "0"}, "FIBOSMS_MAX_ATTEMPTS"),
        ({"FIBOSMS_API_URL": "ha-api.fibosms.com"}, "FIBOSMS_API_URL"),
        ({"FIBOSMS_API_URL": "https://"}, "FIBOSMS_API_URL"),
        ({"FIBOSMS_DATABASE_URL": "mysql://x/y"}, "FIBOSMS_DATABASE_URL"),
        ({"FIBOSMS_BROKER_URL": "amqp://guest@localhost//"}, "FIBOSMS_BROKER_URL"),
        ({"FIBOSMS_RETRY_BASE_SECONDS": "nan"}, "FIBOSMS_RETRY_BASE_SECONDS"),
        ({"FIBOSMS_RETRY_BASE_SECONDS": "100", "FIBOSMS_RETRY_MAX_SECONDS": "10"},
         "FIBOSMS_RETRY_MAX_SECONDS"),
        ({"FIBOSMS_SENDING_TIMEOUT_SECONDS": "20"}, "FIBOSMS_SENDING_TIMEOUT_SECONDS"),
        ({"FIBOSMS_CLIENT_NO": "CL1"}, "FIBOSMS_CLIENT_PASS"),
        ({"FIBOSMS_CLIENT_PASS": "x"}, "FIBOSMS_CLIENT_NO"),
        ({"FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_CLIENT_PASS_FILE": "/nonexistent/pass"},
         "FIBOSMS_CLIENT_PASS_FILE"),
        ({"FIBOSMS_PHONE_FORMAT": "e164"}, "FIBOSMS_PHONE_FORMAT"),
        ({"FIBOSMS_AMBIGUOUS_RETRY_KINDS": "otp,sms"}, "FIBOSMS_AMBIGUOUS_RETRY_KINDS"),
        ({"FIBOSMS_STRIP_DIACRITICS": "maybe"}, "FIBOSMS_STRIP_DIACRITICS"),
        ({"FIBOSMS_SEND_PATH": "SendMT"}, "FIBOSMS_SEND_PATH"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_url_credentials_are_masked_in_errors_and_redacted_output() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FIBOSMS_BROKER_URL": "amqp://user:hunter2@host//"})
    assert "hunter2" not in str(info.value)
    s = Settings.from_env({"FIBOSMS_DATABASE_URL": "postgresql+psycopg://u:hunter2@db/x"})
    assert "hunter2" not in str(s.redacted())


def test_ambiguous_policy_can_be_turned_off() -> None:
    assert Settings.from_env({"FIBOSMS_AMBIGUOUS_RETRY_KINDS": "none"}).ambiguous_retry_kinds == (
        frozenset()
    )
