"""Logging set-up for the worker, beat and command line: one line per event.

``FIBOSMS_LOG_FORMAT=text`` (the default) writes ``time level logger: message``;
``json`` writes one JSON object per line with the record's context — ``message_id``,
``attempt``, ``code``, ``status`` from the send path, ``fibo_*`` from the gateway client
(``fibo_phone`` is already masked) — and never a message text.

A safety net sits on every root handler: :class:`RedactFilter` masks any full Vietnamese
mobile number, ``clientPass=`` value, ``<Password>`` element and URL password in a record's
formatted message, whoever logged it; the formatters do the same to tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from worker.gateway.redact import RewriteFilter, scrub
from worker.rules.phone import mask_phone
from worker.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: a full Vietnamese mobile number in any common spelling: 0912345678, 84912345678,
#: +84 912 345 678, 0912.345.678, the old 11-digit 016x…; not one already masked
_PHONE = re.compile(
    r"(?<![\w*+])(?:\(?\+84\)?[ .-]?|0084[ .-]?|84[ .-]?|0)"  # +84, 0084, 84 or 0
    r"(?:1\d?|[35789])\d(?:[ .-]?\d){7}(?![\w*])"  # 9 digits; 01x: 9 or the old 10
)
#: ``scheme://user:secret@host`` and ``password=secret`` (a DSN, a query string)
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)=[^&\s'\"]*")

#: record attributes that are the record itself, not context; everything else a caller put
#: in ``extra=`` goes into the JSON line
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}
#: context never written, whatever a caller passes: message text and secrets
_NEVER = frozenset({"text", "sms_message", "smsMessage", "client_pass", "password", "recipient"})


def redact(text: str) -> str:
    """``text`` with full phone numbers masked (``0912***678``) and secrets replaced by ``***``."""
    text = scrub(text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _PASSWORD_PARAM.sub(r"\1=***", text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


class RedactFilter(RewriteFilter):
    """Rewrites a record's formatted message with :func:`redact` before a handler writes it."""

    def rewrite(self, text: str) -> str:
        return redact(text)


class TextFormatter(logging.Formatter):
    """The readable line; tracebacks redacted too."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, the context."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _RECORD_FIELDS or key in _NEVER or key.startswith("_") or value is None:
                continue
            out[key] = _json_value(value)
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def _json_value(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, dict):  # Celery's extra={"data": {...}}
        return {str(k): _json_value(v, depth + 1) for k, v in value.items()
                if str(k) not in _NEVER}
    if depth < 4 and isinstance(value, list | tuple):
        return [_json_value(v, depth + 1) for v in value]
    return redact(str(value))


def make_formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else TextFormatter()


_FILTER = RedactFilter()


#: Celery's loggers that write a line or two per task at INFO
CELERY_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def configure_logging(
    settings: Settings, *, level: int | str | None = None, logfile: str | None = None
) -> None:
    """Send fibosms's records to stderr (or ``logfile``) in the configured format and level.

    Idempotent: called again (``fibosms worker`` does, then Celery's set-up hook), it
    reconfigures its own handler instead of adding another. A handler someone else put on
    the root logger is kept, with :class:`RedactFilter` added to it. ``level``, when more
    verbose than ``FIBOSMS_LOG_LEVEL`` (Celery's ``--loglevel``), wins.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "fibosms", False)]
    if logfile:
        for handler in ours:
            if not isinstance(handler, logging.FileHandler):
                root.removeHandler(handler)
        ours = [h for h in ours if isinstance(h, logging.FileHandler)]
    if not ours and (logfile or not root.handlers):
        new: logging.Handler = (
            logging.FileHandler(logfile, encoding="utf-8") if logfile else logging.StreamHandler()
        )
        new.fibosms = True  # type: ignore[attr-defined]
        root.addHandler(new)
        ours = [new]
    for handler in ours:
        handler.setFormatter(make_formatter(settings))
        handler.setLevel(logging.NOTSET)
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)

    wanted = logging.getLevelNamesMapping()[settings.log_level]
    if level is not None:
        given = level if isinstance(level, int) else logging.getLevelNamesMapping().get(
            str(level).upper(), wanted
        )
        wanted = min(wanted, given)
    root.setLevel(wanted)
    logging.getLogger("fibosms").setLevel(wanted)
    # urllib3 logs request lines, query string (and so the password) included, at DEBUG
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Celery's "Task … received" / "… succeeded" lines repeat, per task, what the send path
    # logs with the outcome; below DEBUG they only cost a worker's CPU
    for name in CELERY_PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if wanted <= logging.DEBUG
                                         else logging.WARNING)
