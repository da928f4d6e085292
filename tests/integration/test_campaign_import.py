"""Importing a campaign's CSV: every row is checked before any is accepted.

Bad rows, a file that is not UTF-8, a missing column, 10 MB of garbage: line-numbered
errors and nothing accepted. The commands run as a user runs them (``python -m fibosms.cli``)
on a SQLite ledger; the use case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.fixtures.recording import RecordingPublisher
from tests.integration.test_cli import assert_one_line_error, fibosms
from worker.campaigns import CampaignError, import_suppressions, send_campaign
from worker.ledger.db import Database
from worker.ledger.models import Message, Suppression
from worker.settings import Settings


def count(db: Database, model: type) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def settings(sandbox_env: dict[str, str]) -> Settings:
    return Settings.from_env(sandbox_env)


def send(data: bytes, s: Settings, db: Database, **kw: object) -> object:
    return send_campaign(data, name="c", settings=s, db=db, publisher=RecordingPublisher(),
                         **kw)  # type: ignore[arg-type]


def test_bad_rows_are_listed_by_line_and_nothing_is_accepted(
    database: Database, settings: Settings
) -> None:
    data = (
        b"phone,text\n"
        b"0912345678,Chao ban\n"
        b"12345,Chao ban\n"          # line 3: not a Vietnamese mobile number
        b"0912345679,\n"             # line 4: empty text
        b"0912345680,a,b\n"          # line 5: a field too many
        b"0912345681,Chao\n"
    )
    report = send(data, settings, database)
    assert [e.line for e in report.errors] == [3, 4, 5]  # type: ignore[attr-defined]
    assert report.errors[0].reason.startswith("phone:")  # type: ignore[attr-defined]
    assert report.errors[1].reason.startswith("text:")  # type: ignore[attr-defined]
    assert "3 fields" in report.errors[2].reason  # type: ignore[attr-defined]
    assert report.accepted == 0  # type: ignore[attr-defined]
    assert count(database, Message) == 0
    # unless the bad rows are skipped
    skipped = send(data, settings, database, skip_invalid=True)
    assert (skipped.accepted, skipped.invalid) == (2, 3)  # type: ignore[attr-defined]
    assert count(database, Message) == 2


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("phone,text\n0912345678,Chào\n".encode("cp1258"), "line 2: the file is not UTF-8"),
        (b"numero,text\n0912345678,x\n", "line 1: the header has no 'phone' column"),
        (b"phone,name\n0912345678,x\n", "no 'text' column and no --text"),
        (b'phone,text\n0912345678,"unclosed\n', "not valid CSV"),
    ],
    ids=["not-utf8", "no-phone", "no-text", "broken-quote"],
)
def test_an_unreadable_file_is_refused_whole(
    data: bytes, words: str, database: Database, settings: Settings
) -> None:
    with pytest.raises(CampaignError, match=words):
        send(data, settings, database)
    assert count(database, Message) == 0


def test_ten_megabytes_of_garbage_is_refused_quickly(
    database: Database, settings: Settings
) -> None:
    garbage = random.Random(7).randbytes(10 * 1024 * 1024)
    with pytest.raises(CampaignError, match=r"^line \d+: "):
        send(garbage, settings, database)
    # printable garbage under a good header: every row is refused by its line number
    alphabet = b"abc019,\n x"
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))
    body = random.Random(8).randbytes(10 * 1024 * 1024).translate(table)
    report = send(b"phone,text\n" + body, settings, database)
    errors = report.errors  # type: ignore[attr-defined]
    assert errors and report.accepted == 0  # type: ignore[attr-defined]
    assert all(e.line >= 2 for e in errors)
    assert count(database, Message) == 0


def test_semicolons_a_bom_and_a_template(database: Database, settings: Settings) -> None:
    data = "\ufeffPhone;Ten\n0912345678;An\n0912 345 679;Bình\n".encode()
    report = send(data, settings, database, template="Chao {ten}")
    assert (report.accepted, report.errors) == (2, [])  # type: ignore[attr-defined]
    with database.sessions() as session:
        texts = sorted(session.scalars(select(Message.text)))
    assert texts == ["[QC] Chao An", "[QC] Chao Bình"]


def test_a_suppression_file_adds_the_good_numbers(database: Database) -> None:
    data = b"phone\n0912345678\nnot a number\n0912345678\n0987654321\n"
    result = import_suppressions(data, db=database, reason="opt-out list")
    assert (result.rows, result.added) == (4, 2)
    assert [e.line for e in result.errors] == [3]
    assert count(database, Suppression) == 2


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_env(sandbox_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {**sandbox_env, "FIBOSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "FIBOSMS_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}"}
    assert fibosms("db", "upgrade", env=env).returncode == 0
    return env


def test_campaign_send_json_and_exit_codes(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,text\n0912345678,Chao\nxyz,Chao\n", encoding="utf-8")
    result = fibosms("campaign", "send", str(bad), "--name", "n1", "--json", env=cli_env)
    assert result.returncode == 2, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"campaign", "rows", "accepted", "invalid", "suppressed", "duplicates",
                        "segments", "errors"}
    assert (doc["accepted"], doc["errors"][0]["line"]) == (0, 3)

    good = tmp_path / "good.csv"
    good.write_text("phone\n0912345678\n0987654321\n", encoding="utf-8")
    dry = fibosms("campaign", "send", str(good), "--name", "n2", "--text", "Uu dai",
                  "--dry-run", "--json", env=cli_env)
    assert json.loads(dry.stdout)["accepted"] == 0 and dry.returncode == 0
    for expected in (2, 0):  # the second run accepts nothing new
        run = fibosms("campaign", "send", str(good), "--name", "n2", "--text", "Uu dai",
                      "--json", env=cli_env)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["accepted"] == expected
    assert "0912345678" not in run.stdout + run.stderr
    # not a terminal: no progress bar
    assert "\r" not in run.stderr and "s left" not in run.stderr

    shown = json.loads(fibosms("campaign", "show", "n2", "--json", env=cli_env).stdout)
    assert shown["campaign"] == "n2" and shown["counts"] == {"queued": 2}
    assert "holds" in shown
    listed = json.loads(fibosms("campaign", "list", "--json", env=cli_env).stdout)
    assert [c["campaign"] for c in listed] == ["n2"]
    cancelled = fibosms("campaign", "cancel", "n2", env=cli_env)
    assert cancelled.returncode == 0 and "2 message(s) cancelled" in cancelled.stdout
    assert_one_line_error(fibosms("campaign", "show", "nope", env=cli_env), 4)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(os.urandom(1 << 20))
    assert_one_line_error(
        fibosms("campaign", "send", str(garbage), "--name", "g", env=cli_env), 2
    )


def test_suppress_commands(cli_env: dict[str, str], tmp_path: Path) -> None:
    added = fibosms("suppress", "add", "0912 345 678", "+84987654321", "--reason", "asked",
                    env=cli_env)
    assert added.returncode == 0, added.stderr
    listed = json.loads(fibosms("suppress", "list", "--json", env=cli_env).stdout)
    assert [(e["phone"], e["reason"], e["source"]) for e in listed] == [
        ("0912345678", "asked", "operator"), ("0987654321", "asked", "operator")
    ]
    assert set(listed[0]) == {"phone", "reason", "source", "created_at"}
    assert fibosms("suppress", "remove", "0912345678", env=cli_env).returncode == 0
    file = tmp_path / "optout.csv"
    file.write_text("phone\n0911111111\n", encoding="utf-8")
    assert fibosms("suppress", "import", str(file), env=cli_env).returncode == 0
    phones = [e["phone"] for e in json.loads(
        fibosms("suppress", "list", "--json", env=cli_env).stdout)]
    assert phones == ["0911111111", "0987654321"]
    assert_one_line_error(fibosms("suppress", "add", "abc", env=cli_env), 2)


def test_the_progress_bar_shows_on_a_terminal(cli_env: dict[str, str], tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    from tests.fixtures.stack import ROOT

    good = tmp_path / "good.csv"
    good.write_text("phone\n0912345678\n0987654321\n", encoding="utf-8")
    master, slave = pty.openpty()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "fibosms.cli", "campaign", "send", str(good), "--name", "tty",
             "--text", "Uu dai"],
            cwd=ROOT, env={**os.environ, **cli_env}, stdout=subprocess.PIPE, stderr=slave,
            stdin=subprocess.DEVNULL, text=True, timeout=60,
        )
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert run.returncode == 0
    assert b"2/2 rows" in seen and b"s left" in seen
    assert "accepted    2" in run.stdout
