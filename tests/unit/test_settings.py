import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from worker.kinds import Kind
from worker.settings import (
    DEMO_CLIENT_NO,
    FIBO_API_URL,
    KINDS,
    Settings,
    SettingsError,
    env_names,
)
from worker.settings.declared import declared
from worker.settings.load import base_type
from worker.settings.table import BEGIN, END, markdown


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
        ({"FIBOSMS_BROKER_URL": "kafka://guest@localhost//"}, "FIBOSMS_BROKER_URL"),
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
        Settings.from_env({"FIBOSMS_BROKER_URL": "kafka://user:hunter2@host//"})
    assert "hunter2" not in str(info.value)
    s = Settings.from_env({"FIBOSMS_DATABASE_URL": "postgresql+psycopg://u:hunter2@db/x"})
    assert "hunter2" not in str(s.redacted())


def test_ambiguous_policy_can_be_turned_off() -> None:
    assert Settings.from_env({"FIBOSMS_AMBIGUOUS_RETRY_KINDS": "none"}).ambiguous_retry_kinds == (
        frozenset()
    )


# -- bounds: every number is finite and bounded on both sides ------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FIBOSMS_MAX_ATTEMPTS": "abc"},
         "FIBOSMS_MAX_ATTEMPTS must be an integer between 1 and 100, got 'abc'"),
        ({"FIBOSMS_MAX_ATTEMPTS": "101"},
         "FIBOSMS_MAX_ATTEMPTS must be an integer between 1 and 100, got '101'"),
        ({"FIBOSMS_RETRY_BASE_SECONDS": "inf"},
         "FIBOSMS_RETRY_BASE_SECONDS must be a number between 0 and 86400, got 'inf'"),
        ({"FIBOSMS_RETRY_MAX_SECONDS": "1e300"},
         "FIBOSMS_RETRY_MAX_SECONDS must be a number between 0 and 604800, got '1e300'"),
        ({"FIBOSMS_METRICS_PORT": "65536"},
         "FIBOSMS_METRICS_PORT must be an integer between 1 and 65535, got '65536'"),
        ({"FIBOSMS_SANDBOX_PORT": "99999"},
         "FIBOSMS_SANDBOX_PORT must be an integer between 1 and 65535, got '99999'"),
        ({"FIBOSMS_URGENT_RESERVE": "1"},
         "FIBOSMS_URGENT_RESERVE must be a number from 0 to below 1, got '1'"),
        ({"FIBOSMS_TASK_EVENTS": "sometimes"},
         "FIBOSMS_TASK_EVENTS must be true or false, got 'sometimes'"),
        ({"FIBOSMS_LOG_FORMAT": "xml"},
         "FIBOSMS_LOG_FORMAT must be one of 'text', 'json', got 'xml'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_its_range(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert str(info.value) == message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "-1e300", "1e309"])
@pytest.mark.parametrize("name", sorted(d.env for d in declared()
                                        if d.env and (d.le is not None or d.lt is not None)))
def test_no_numeric_setting_takes_a_non_finite_or_huge_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be"):
        Settings.from_env({name: value})


def test_every_number_has_both_bounds() -> None:
    numeric = [d for d in declared() if d.ge is not None or d.le is not None or d.lt is not None]
    assert len(numeric) > 25
    for d in numeric:
        assert d.ge is not None and (d.le is not None or d.lt is not None), d.name
    # and every int or float setting is among them
    for d in declared():
        if d.env and base_type(d.annotation) in (int, float):
            assert d in numeric, d.name


def test_the_bounds_themselves_are_accepted() -> None:
    s = Settings.from_env({
        "FIBOSMS_MAX_ATTEMPTS": "100",
        "FIBOSMS_METRICS_PORT": "65535",
        "FIBOSMS_WORKER_METRICS_PORT": "0",
        "FIBOSMS_RETRY_BASE_SECONDS": "0",
        "FIBOSMS_RETRY_MAX_SECONDS": "604800",
        "FIBOSMS_SENDING_TIMEOUT_SECONDS": "86400",
    })
    assert (s.max_attempts, s.metrics_port, s.worker_metrics_port) == (100, 65535, 0)
    assert (s.retry_base_seconds, s.retry_max_seconds) == (0.0, 604800.0)


def test_a_huge_integer_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FIBOSMS_SWEEP_BATCH": "9" * 5000})
    text = str(info.value)
    assert text.startswith("FIBOSMS_SWEEP_BATCH must be an integer between 1 and 100000")
    assert "\n" not in text and len(text) < 200


def test_an_unparsable_url_names_the_variable() -> None:
    # urlsplit raises on an unclosed IPv6 bracket; that used to escape as a bare ValueError
    with pytest.raises(SettingsError, match=r"^FIBOSMS_API_URL is not a URL"):
        Settings.from_env({"FIBOSMS_API_URL": "http://[::1"})


# -- files: capped, regular, UTF-8, never hanging ------------------------------------------


def account(pass_file: Path | str) -> dict[str, str]:
    return {"FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_CLIENT_PASS_FILE": str(pass_file)}


@pytest.mark.timeout(10)
def test_a_password_file_that_is_a_device_is_refused_without_hanging() -> None:
    with pytest.raises(SettingsError, match=r"^FIBOSMS_CLIENT_PASS_FILE must name a regular file"):
        Settings.from_env(account("/dev/zero"))


@pytest.mark.timeout(10)
def test_a_password_file_that_is_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pass"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(SettingsError, match=r"^FIBOSMS_CLIENT_PASS_FILE must name a regular file"):
        Settings.from_env(account(fifo))


def test_a_password_file_over_4_kib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "pass"
    big.write_bytes(b"x" * 4097)
    with pytest.raises(SettingsError, match="FIBOSMS_CLIENT_PASS_FILE is larger than 4096 bytes"):
        Settings.from_env(account(big))
    big.write_bytes(b"y" * 4096)
    assert Settings.from_env(account(big)).client_pass == "y" * 4096


def test_a_password_file_that_is_not_utf8_is_one_line_without_its_content(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "pass"
    bad.write_bytes(b"Secr\xe9t-77")
    with pytest.raises(SettingsError) as info:
        Settings.from_env(account(bad))
    assert str(info.value).startswith("FIBOSMS_CLIENT_PASS_FILE is not valid UTF-8")
    assert "Secr" not in str(info.value)


def test_a_flower_credentials_file_is_capped_too() -> None:
    with pytest.raises(SettingsError, match=r"^FIBOSMS_FLOWER_BASIC_AUTH_FILE must name a regular"):
        Settings.from_env({"FIBOSMS_FLOWER_BASIC_AUTH_FILE": "/dev/zero"})


def run_in(cwd: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter in ``cwd``, with ``env`` as the FIBOSMS_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIBOSMS_")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )


READ = "from worker.settings import Settings; s = Settings.from_env(); "


def test_dotenv_supplies_values_and_the_real_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "FIBOSMS_MAX_ATTEMPTS=5\nFIBOSMS_SWEEP_SECONDS=7\nfibosms_sweep_batch=3\nOTHER=1\n"
    )
    done = run_in(tmp_path, {"FIBOSMS_SWEEP_SECONDS": "9"},
                  READ + "print(s.max_attempts, s.sweep_seconds, s.sweep_batch)")
    assert done.returncode == 0, done.stderr
    # names are case-sensitive, as they always were
    assert done.stdout.split() == ["5", "9.0", "1000"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"FIBOSMS_MAX_ATTEMPTS=\xff\xfe\n", "FIBOSMS_ENV_FILE is not valid UTF-8 (.env"),
        (b"# padding\n" * 120_000, "FIBOSMS_ENV_FILE is larger than 1048576 bytes (.env)"),
    ],
)
def test_a_bad_dotenv_is_a_one_line_settings_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / ".env").write_bytes(content)
    done = run_in(tmp_path, {}, "from worker.settings import Settings, SettingsError\n"
                  "try:\n    Settings.from_env()\nexcept SettingsError as e:\n    print(e)")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(message)
    assert done.stdout.count("\n") == 1


@pytest.mark.timeout(30)
def test_an_env_file_that_is_a_device_is_refused_without_hanging(tmp_path: Path) -> None:
    done = run_in(tmp_path, {"FIBOSMS_ENV_FILE": "/dev/zero"},
                  "from worker.settings import Settings, SettingsError\n"
                  "try:\n    Settings.from_env()\nexcept SettingsError as e:\n    print(e)")
    assert done.stdout.strip() == "FIBOSMS_ENV_FILE must name a regular file (/dev/zero)"


# -- the declaration and the README ----------------------------------------------------------


def test_every_attribute_keeps_its_variable_name_and_default() -> None:
    s = Settings.from_env({})
    by_name = {d.name: d for d in declared()}
    for name, d in by_name.items():
        if d.default_text is None and d.env is not None:
            assert getattr(s, name) == d.default, name
    assert by_name["using_sandbox"].env is None
    assert {d.env for d in declared() if d.env} >= {
        "FIBOSMS_MAX_ATTEMPTS", "FIBOSMS_SENDING_TIMEOUT_SECONDS", "FIBOSMS_RATE_BURST",
        "FIBOSMS_CALL_DEADLINE_SECONDS", "FIBOSMS_FLOWER_ADDRESS",
    }
    assert (s.call_deadline_seconds, s.flower_address) == (35.0, "127.0.0.1")


def test_the_readme_table_is_the_declaration() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    begin, end = readme.index(BEGIN), readme.index(END)
    shown = readme[begin:end + len(END)] + "\n"
    assert shown == markdown(), "run `python -m worker.settings --markdown` into README.md"
    listed = re.findall(r"^\| `(FIBOSMS_[A-Z0-9_]+)` \|", shown, flags=re.M)
    assert listed == list(dict.fromkeys(listed)), "a variable is listed twice"
    assert set(listed) == set(env_names())


def test_the_table_is_printed_by_the_module() -> None:
    done = subprocess.run([sys.executable, "-m", "worker.settings", "--markdown"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == markdown()
    assert "| `FIBOSMS_MAX_ATTEMPTS` | 8 | 1–100 |" in done.stdout


def test_settings_stay_a_frozen_dataclass_that_replace_does_not_revalidate() -> None:
    # tests vary settings already read this way, down to values start-up would refuse
    s = Settings.from_env({})
    other = dataclasses.replace(s, api_url="fibo.example", read_timeout_seconds=2.0)
    assert (other.api_url, other.read_timeout_seconds) == ("fibo.example", 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_attempts = 3  # type: ignore[misc]
    assert KINDS == tuple(k.value for k in Kind) == ("otp", "transactional", "marketing")
    assert s.ambiguous_retry_kinds == {Kind.OTP, Kind.TRANSACTIONAL}


def test_the_public_names_are_the_ones_other_modules_import() -> None:
    import worker.settings as package

    assert set(package.__all__) == {
        "BALANCE_PATH", "DEMO_CLIENT_NO", "DEMO_CLIENT_PASS", "FIBO_API_URL", "KINDS",
        "METRICS_PORT", "SANDBOX_HOST", "SANDBOX_PORT", "SEND_PATH", "TOTALS_PATH",
        "LogFormat", "PhoneFormat", "Settings", "SettingsError", "env_names", "get_settings",
        "redact_url",
    }
    for name in package.__all__:
        assert hasattr(package, name), name
