"""What a user can get wrong — an unreachable or unmigrated database, out-of-range input, an
unreadable settings file — comes back as one line and an exit code: no traceback, no secret,
no phone number, no message text."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.services import empty_pg_database
from tests.fixtures.stack import ROOT, Stack
from tests.integration.test_cli import assert_one_line_error, fibosms
from worker.errors import ValidationError

DB_PASSWORD = "Db-Pa55-QWZ"
PHONE = "0912 345 678"
TEXT = "Ma OTP cua ban la 493817"
#: every form the number could take in a message: as typed, national, international, bare
PHONE_FORMS = (PHONE, "0912345678", "84912345678", "912345678")

#: the commands that read or write the ledger (db upgrade only fails when it cannot connect)
LEDGER_COMMANDS = [
    ["send", PHONE, TEXT],
    ["status", "1"],
    ["failures", "list"],
    ["failures", "show", "1"],
    ["failures", "replay", "1"],
    ["sweep"],
    ["report"],
    ["resume"],
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(stack_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {**stack_env, "FIBOSMS_BROKER_URL": redis_url}


@pytest.fixture(scope="module")
def unmigrated_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database: reachable, never migrated."""
    with empty_pg_database("fibosms_unmigrated") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'never-migrated.db'}"
    return str(request.getfixturevalue("unmigrated_pg_url"))


def assert_nothing_private(out: str) -> None:
    assert "Traceback" not in out
    for secret in (DB_PASSWORD, SANDBOX_PASSWORD, TEXT, "493817", *PHONE_FORMS):
        assert secret not in out, secret


@pytest.mark.parametrize(
    "command", [*LEDGER_COMMANDS, ["db", "upgrade"]], ids=lambda c: " ".join(c[:2])
)
def test_an_unreachable_database_is_one_line_with_the_password_masked(
    command: list[str], env: dict[str, str]
) -> None:
    url = f"postgresql://fibosms:{DB_PASSWORD}@127.0.0.1:{closed_port()}/ledger"
    result = fibosms(*command, env={**env, "FIBOSMS_DATABASE_URL": url})
    line = assert_one_line_error(result, 1)
    assert "cannot reach the database at postgresql://fibosms:***@127.0.0.1:" in line
    assert_nothing_private(result.stdout + result.stderr)


@pytest.mark.parametrize("command", LEDGER_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unmigrated_database_says_to_run_db_upgrade(
    command: list[str], env: dict[str, str], unmigrated_url: str
) -> None:
    result = fibosms(*command, env={**env, "FIBOSMS_DATABASE_URL": unmigrated_url})
    line = assert_one_line_error(result, 1)
    assert line == "fibosms: error: the database is not migrated: run `fibosms db upgrade`"
    assert_nothing_private(result.stdout + result.stderr)


def test_the_json_error_document_says_the_same(env: dict[str, str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    result = fibosms("status", "1", "--json", env={**env, "FIBOSMS_DATABASE_URL": url})
    assert_one_line_error(result, 1)
    assert '"exit_code": 1' in result.stdout and "not migrated" in result.stdout


_PYTHON_API = """
import traceback
from producer import enqueue_sms
try:
    enqueue_sms({phone!r}, {text!r})
except Exception as exc:
    print(type(exc).__name__)
    print(str(exc))
    print(repr(exc))
    traceback.print_exc()
else:
    print("accepted")
"""


def test_sending_from_python_into_an_unmigrated_database_echoes_no_parameters(
    env: dict[str, str], unmigrated_url: str
) -> None:
    # Given an application calling enqueue_sms on a database nobody migrated
    script = _PYTHON_API.format(phone=PHONE, text=TEXT)
    # When it sends
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT, env={**os.environ, **env, "FIBOSMS_DATABASE_URL": unmigrated_url},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    # Then it fails, and nothing it prints — message, repr, traceback — holds the number or text
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "accepted" not in result.stdout and "Traceback" in result.stderr
    assert "sms_messages" in out  # the error is the missing table
    for secret in (TEXT, "493817", *PHONE_FORMS):
        assert secret not in out, secret


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["status", str(2**63)], "MESSAGE_ID"),
        (["status", "99999999999999999999"], "MESSAGE_ID"),
        (["status", "0"], "MESSAGE_ID"),
        (["failures", "show", str(2**64)], "MESSAGE_ID"),
        (["failures", "replay", "1", str(2**63)], "MESSAGE_IDS"),
        (["failures", "list", "--code", "9999999999"], "--code"),
        (["failures", "replay", "--code", "9999999999"], "--code"),
        (["failures", "list", "--since", "0001-01-01T00:00+14:00"], "--since"),
        (["report", "--date", "0001-01-01"], "--date"),
        (["report", "--date", "9999-12-31"], "--date"),
        (["health", "--timeout", "1e400"], "--timeout"),
        (["health", "--timeout", "nan"], "--timeout"),
        (["sandbox", "--delay", "inf"], "--delay"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_out_of_range_input_is_one_line_naming_the_parameter(
    args: list[str], words: str, tmp_path: Path, sqlite_url: str
) -> None:
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none"),
           "FIBOSMS_DATABASE_URL": sqlite_url}
    line = assert_one_line_error(fibosms(*args, env=env), 2)
    assert words in line


def test_a_report_on_the_last_day_it_allows_works(tmp_path: Path, sqlite_url: str) -> None:
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none"),
           "FIBOSMS_DATABASE_URL": sqlite_url}
    for day in ("1970-01-01", "9998-12-31"):
        result = fibosms("report", "--date", day, "--json", env=env)
        assert result.returncode == 0, result.stderr
        assert f'"date": "{day}"' in result.stdout


@pytest.mark.parametrize("which", ["env_file", "password_file"])
def test_a_settings_file_that_is_not_utf8_is_one_line(which: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"FIBOSMS_MAX_ATTEMPTS=\xff\xfe\n" if which == "env_file" else b"pa\xffss")
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none")}
    if which == "env_file":
        env["FIBOSMS_ENV_FILE"] = str(bad)
    else:
        env |= {"FIBOSMS_CLIENT_NO": "demo", "FIBOSMS_CLIENT_PASS_FILE": str(bad)}
    result = fibosms("settings", env=env)
    assert_one_line_error(result, 3)
    assert "pa\ufffdss" not in result.stderr and "0xff" not in result.stderr


def test_a_usage_error_is_one_line_that_points_at_help(tmp_path: Path) -> None:
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none")}
    line = assert_one_line_error(fibosms("status", "--bogus", env=env), 2)
    assert "--bogus" in line and "fibosms status --help" in line
    as_json = fibosms("status", "0", "--json", env=env)
    assert_one_line_error(as_json, 2)
    assert json.loads(as_json.stdout)["exit_code"] == 2


@pytest.mark.parametrize(
    ("field", "when"),
    [
        ("send_at", datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-12)))),
        ("send_at", datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14)))),
        ("expires_at", datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-12)))),
    ],
    ids=["send_at-year-9999-minus-12h", "send_at-year-1-plus-14h", "expires_at-year-9999"],
)
def test_a_time_beyond_what_the_ledger_holds_is_refused_naming_the_field(
    make_stack: Callable[..., Stack], db_url: str, redis_url: str, field: str, when: datetime
) -> None:
    producer = make_stack(db_url, redis_url).producer
    with pytest.raises(ValidationError) as refused:
        producer.enqueue_sms(PHONE, TEXT, **{field: when})
    assert refused.value.field == field
    assert "between 1970-01-01 and 9998-12-31 UTC" in str(refused.value)


def test_db_upgrade_to_an_unknown_revision_is_one_line(tmp_path: Path) -> None:
    # Given a ledger some other version migrated to a revision this code does not know
    path = tmp_path / "ledger.db"
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none"),
           "FIBOSMS_DATABASE_URL": f"sqlite:///{path}"}
    assert fibosms("db", "upgrade", env=env).returncode == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    # When db upgrade runs, or is asked for a revision that does not exist
    unknown_in_db = fibosms("db", "upgrade", env=env)
    unknown_asked = fibosms("db", "upgrade", "--revision", "nonsense", env=env)
    # Then each is one line naming the revision
    assert "'9999'" in assert_one_line_error(unknown_in_db, 1)
    assert "'nonsense'" in assert_one_line_error(unknown_asked, 1)


def test_a_sqlite_file_that_cannot_be_created_is_one_line_naming_the_place(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the ledger's directory should be")
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "none"),
           "FIBOSMS_DATABASE_URL": f"sqlite:///{blocker}/ledger.db"}
    line = assert_one_line_error(fibosms("status", "1", env=env), 1)
    assert str(blocker) in line
