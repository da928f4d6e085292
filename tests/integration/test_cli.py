"""The ``fibosms`` command as a user runs it: a real process, real services, real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.stack import ROOT, Stack, wait_for

COMMANDS = [
    [], ["send"], ["status"], ["failures"], ["failures", "list"], ["failures", "show"],
    ["failures", "replay"], ["balance"], ["totals"], ["db"], ["db", "upgrade"], ["sweep"],
    ["sandbox"], ["dev"], ["settings"], ["report"], ["resume"],
]


def fibosms(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fibosms.cli", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fibosms: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fibosms")
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = fibosms(*command, "--help", env={"FIBOSMS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_worker_help_is_celerys_own(tmp_path: Path) -> None:
    result = fibosms("worker", "--help", env={"FIBOSMS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0 and "--concurrency" in result.stdout


def test_balance_and_totals_print_one_json_document(
    sandbox: Any, stack_env: dict[str, str]
) -> None:
    sandbox.set_balance(4242)
    balance = fibosms("balance", "--json", env=stack_env)
    assert balance.returncode == 0, balance.stderr
    assert json.loads(balance.stdout)["balance"] == 4242
    totals = fibosms("totals", "--json", env=stack_env)
    assert totals.returncode == 0, totals.stderr
    assert json.loads(totals.stdout) == {"success": 0, "failed": 0, "pending": 0}


def test_a_wrong_password_is_one_line_without_the_password(
    sandbox: Any, stack_env: dict[str, str]
) -> None:
    env = {**stack_env, "FIBOSMS_CLIENT_PASS": "Wrong-Pa55-QQQ"}
    result = fibosms("balance", env=env)
    line = assert_one_line_error(result, 1)
    assert "code 3" in line and "wrong user or password" in line
    assert "Wrong-Pa55-QQQ" not in result.stdout + result.stderr


def test_an_unreachable_gateway_is_one_line_without_the_password(
    stack_env: dict[str, str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**stack_env, "FIBOSMS_API_URL": f"http://127.0.0.1:{port}"}
    result = fibosms("balance", "--json", env=env)
    assert_one_line_error(result, 1)
    assert json.loads(result.stdout)["exit_code"] == 1
    assert SANDBOX_PASSWORD not in result.stdout + result.stderr


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = fibosms("balance", env={"FIBOSMS_MAX_ATTEMPTS": "many",
                                     "FIBOSMS_DATA_DIR": str(tmp_path)})
    line = assert_one_line_error(result, 3)
    assert "FIBOSMS_MAX_ATTEMPTS" in line


def test_the_sandbox_and_balance_agree_out_of_the_box(tmp_path: Path) -> None:
    # Given no account configured, only a free port for the sandbox
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"FIBOSMS_SANDBOX_PORT": str(port), "FIBOSMS_DATA_DIR": str(tmp_path),
           "FIBOSMS_ENV_FILE": str(tmp_path / "none")}
    env = {k: v for k, v in {**os.environ, **env}.items()
           if not k.startswith("FIBOSMS_") or k in env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fibosms.cli", "sandbox", "--balance", "77"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, timeout=20)
        # When `fibosms balance` runs with the same (empty) environment
        result = fibosms("balance", "--json", env=env)
        # Then it reads the sandbox's demo account
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["balance"] == 77
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_send_status_failures_and_replay_from_the_command_line(
    make_stack: Callable[..., Stack], db_url: str, redis_url: str, sandbox: Any
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(db_url, redis_url)
    clean_ledger(stack.db)
    env = stack.env
    sandbox.script("0987654321", [{"code": 7}])
    stack.start_worker()

    sent = fibosms("send", "+84 987 654 321", "Don hang #7 da giao", "--key", "o-7", "--json",
                   env=env)
    assert sent.returncode == 0, sent.stderr
    mid = json.loads(sent.stdout)["id"]

    def dead() -> dict[str, Any] | None:
        st = json.loads(fibosms("status", str(mid), "--json", env=env).stdout)
        return st if st["status"] == "dead" else None

    status = wait_for(dead, timeout=30)
    assert (status["attempts"], status["last_code"], status["recipient"]) == (1, 7, "0987***321")
    [call] = status["attempts_history"]
    assert (call["attempt"], call["claim"], call["status"], call["code"]) == (1, 1, "dead", 7)
    assert (call["ambiguous"], call["guessed"], call["late"]) == (False, False, False)
    assert call["claimed_at"] <= call["recorded_at"]

    listed = json.loads(fibosms("failures", "list", "--json", "--code", "7", env=env).stdout)
    assert [(f["message_id"], f["code"], f["class"]) for f in listed] == [(mid, 7, "permanent")]

    replayed = fibosms("failures", "replay", str(mid), "--json", env=env)
    assert json.loads(replayed.stdout)["replayed"] == [mid]
    wait_for(lambda: json.loads(fibosms("status", str(mid), "--json", env=env).stdout)["status"]
             == "sent", timeout=30)
    shown = json.loads(fibosms("failures", "show", str(mid), "--json", env=env).stdout)
    assert shown["message"]["status"] == "sent"
    assert len(shown["failures"]) == 1 and shown["failures"][0]["replayed_at"] is not None
    assert [(a["claim"], a["status"], a["code"]) for a in shown["message"]["attempts_history"]
            ] == [(1, "dead", 7), (2, "sent", 200)]
    plain = fibosms("status", str(mid), env=env).stdout
    assert "attempts history:" in plain and "claim 2" in plain and "0987654321" not in plain
    assert json.loads(fibosms("failures", "list", "--json", env=env).stdout) == []


def test_a_refused_message_and_an_unknown_id_exit_non_zero(
    make_stack: Callable[..., Stack], sqlite_url: str, redis_url: str
) -> None:
    env = make_stack(sqlite_url, redis_url).env
    line = assert_one_line_error(fibosms("send", "024 3826 1234", "hello", env=env), 2)
    assert "phone" in line and "landline" in line
    assert_one_line_error(fibosms("status", "999999", env=env), 4)


def test_report_prints_the_day_as_one_json_document(
    make_stack: Callable[..., Stack], sqlite_url: str, redis_url: str
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(sqlite_url, redis_url)
    clean_ledger(stack.db)
    result = fibosms("report", "--date", "2026-11-27", "--json", env=stack.env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["date"] == "2026-11-27" and data["gateway"] is None
    assert data["local"] == {"sent": 0, "dead": 0, "in_flight": 0, "sent_at_gateway_poll": None}
    assert data["mismatch"] is False and data["account"]["paused"] is False
    bad = fibosms("report", "--date", "27/11/2026", env=stack.env)
    assert_one_line_error(bad, 2)
    resumed = fibosms("resume", "--json", env=stack.env)
    assert json.loads(resumed.stdout) == {"resumed": False, "published": 0}


def test_the_console_script_is_the_fibosms_package(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="fibosms")
    assert script.value == "fibosms.cli.main:run"
    installed = Path(sys.executable).parent / "fibosms"
    result = subprocess.run(
        [str(installed), "--help"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "FIBOSMS_DATA_DIR": str(tmp_path)}, check=False,
    )
    assert result.returncode == 0 and "Usage: fibosms" in result.stdout, result.stderr
