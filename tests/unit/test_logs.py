"""Log lines: one per event, JSON on request, context kept, numbers and secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker.logs import JsonFormatter, RedactFilter, TextFormatter, configure_logging, redact
from worker.settings import Settings


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    """The root logger with no handlers, restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_fibosms = logging.getLogger("fibosms").level
    root.handlers = []
    yield root
    root.handlers = saved_handlers
    root.setLevel(saved_level)
    logging.getLogger("fibosms").setLevel(saved_fibosms)


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("fibosms.send", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("to 0912345678 now", "to 0912***678 now"),
        ("to +84 912 345 678", "to 0912***678"),
        ("to 84912345678.", "to 0912***678."),
        ("to 0912.345.678", "to 0912***678"),
        ("old 01621234567", "old 0321***567"),
        ("GET /x?clientNo=CL1&clientPass=Sec-ret9&a=1", "GET /x?clientNo=CL1&clientPass=***&a=1"),
        ("<Password>Sec-ret9</Password>", "<Password>***</Password>"),
        ("postgresql+psycopg://app:Sec-ret9@db/fibosms", "postgresql+psycopg://app:***@db/fibosms"),
        ("password=Sec-ret9 and more", "password=*** and more"),
        # left alone: masked numbers, ids, durations, task ids
        ("message 12 to 0912***678 ms=341", "message 12 to 0912***678 ms=341"),
        ("task 3b1f0e2a-0912-4567-89ab-cdef01234567", "task 3b1f0e2a-0912-4567-89ab-cdef01234567"),
        ("epoch 1732671234", "epoch 1732671234"),
    ],
)
def test_redact_masks_numbers_and_secrets_and_leaves_the_rest(raw: str, shown: str) -> None:
    assert redact(raw) == shown


def test_the_filter_rewrites_a_record_that_carries_a_number_in_its_arguments() -> None:
    rec = record("sending %s to %s", "hello", "0987654321")
    assert RedactFilter().filter(rec) is True
    assert rec.getMessage() == "sending hello to 0987***321"


def test_json_lines_carry_the_context_and_never_the_text() -> None:
    rec = record(
        "attempt %d of message %d to %s: %s", 1, 42, "0912***678", "sent",
        message_id=42, attempt=1, code=200, status="sent", fibo_phone="0912***678",
        text="Ma OTP 123456", recipient="0912345678",
    )
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "attempt 1 of message 42 to 0912***678: sent"
    assert (data["message_id"], data["attempt"], data["code"], data["status"]) == (
        42, 1, 200, "sent"
    )
    assert data["fibo_phone"] == "0912***678"
    assert (data["level"], data["logger"]) == ("INFO", "fibosms.send")
    assert "text" not in data and "recipient" not in data
    nested = json.loads(JsonFormatter().format(
        record("task", data={"args": "[42]", "text": "Ma OTP 123456", "to": ["0912345678"]})
    ))
    assert nested["data"] == {"args": "[42]", "to": ["0912***678"]}
    assert "123456" not in line and "0912345678" not in line


def test_a_traceback_is_redacted_in_both_formats() -> None:
    try:
        raise RuntimeError("GET /send?clientPass=Sec-ret9&phoneNumber=0912345678")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    for formatter in (JsonFormatter(), TextFormatter()):
        out = formatter.format(rec)
        assert "Sec-ret9" not in out and "0912345678" not in out, out
        assert "RuntimeError" in out


def test_configure_logging_is_idempotent_and_follows_the_format(
    clean_root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_root.handlers = []  # pytest's capture handlers too
    text = Settings.from_env({})
    configure_logging(text)
    configure_logging(Settings.from_env({"FIBOSMS_LOG_FORMAT": "json"}), level="DEBUG")
    assert len(clean_root.handlers) == 1
    assert clean_root.level == logging.DEBUG  # --loglevel DEBUG is more verbose than INFO
    logging.getLogger("fibosms.test").info("to %s", "0912345678", extra={"message_id": 7})
    err = capsys.readouterr().err.strip()
    data = json.loads(err)
    assert (data["message"], data["message_id"]) == ("to 0912***678", 7)


def test_a_foreign_root_handler_is_kept_and_gets_the_safety_net(
    clean_root: logging.Logger,
) -> None:
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    clean_root.handlers = [foreign]
    configure_logging(Settings.from_env({}))
    assert clean_root.handlers == [foreign]
    logging.getLogger("some.library").warning("url https://x/?clientPass=Sec-ret9 to 0912345678")
    assert stream.getvalue().strip() == "url https://x/?clientPass=*** to 0912***678"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("to 0121012345 now", "to 0121***345 now"),
        ("to 0140123456", "to 0140***456"),
        ("to +84 160 123 456", "to 0160***456"),
        ("to 84301234567", "to 0301***567"),
    ],
)
def test_the_ten_digit_numbers_under_01_that_libphonenumber_lists_are_masked(
    raw: str, shown: str
) -> None:
    # 0121[0-3], 0140 and 0160 are mobile ranges of 10 digits, beside the old 11-digit 01xx
    assert redact(raw) == shown
