"""What every ``fibosms`` command shares: output, ``--json``, exit codes, and the one place
where the errors a user can cause become one line on stderr.

Exit codes: 0 done; 1 the gateway, the database, the broker or the pipeline refused or
failed; 2 bad usage or a message refused at the door; 3 a bad setting; 4 not found.

Nothing here imports SQLAlchemy, Celery or kombu: their errors are recognised only when the
command that failed had already imported them; the settings module is imported when a
command reads the settings. So ``fibosms --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from worker.errors import FiboError, ValidationError

if TYPE_CHECKING:
    from worker.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_NOT_FOUND = 1, 2, 3, 4

NOT_MIGRATED = "the database is not migrated: run `fibosms db upgrade`"

#: SQLSTATEs of a schema behind the code: undefined table, undefined column
_PG_NOT_MIGRATED = frozenset({"42P01", "42703"})
#: SQLite's words for the same
_SQLITE_NOT_MIGRATED = ("no such table", "no such column", "has no column named")

_SETTINGS_KEY = "fibosms.settings"


class CliError(Exception):
    """An expected failure: its message is printed as one line, ``exit_code`` is returned."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(message: str) -> str:
    """``message`` on one line: the lines of a multi-line error joined with "; "."""
    parts = [line.strip() for line in str(message).splitlines() if line.strip()]
    return "; ".join(parts) or "unknown error"


def fail(message: str, code: int, as_json: bool = False) -> NoReturn:
    """Print ``fibosms: error: …`` on stderr (and the JSON document with ``--json``), exit."""
    message = one_line(message)
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False))
    click.echo(f"fibosms: error: {message}", err=True)
    sys.exit(code)


def handled(fn: F) -> F:
    """Expected failures become one line on stderr and an exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # what is not expected is raised again, untouched
            found = describe(exc)
            if found is None:
                raise
            fail(found[0], found[1], as_json)

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for an error a user can cause, else None."""
    from worker.settings import SettingsError

    if isinstance(exc, SettingsError):
        return f"bad setting: {exc}", EXIT_CONFIG
    if isinstance(exc, ValidationError):
        return f"message refused: {exc}", EXIT_USAGE
    if isinstance(exc, FiboError):
        return f"gateway: {exc}", EXIT_FAILED
    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    database = _database_error(exc)
    if database is not None:
        return database, EXIT_FAILED
    broker = _broker_error(exc)
    if broker is not None:
        return broker, EXIT_FAILED
    alembic_exc = sys.modules.get("alembic.util.exc")
    if alembic_exc is not None and isinstance(exc, alembic_exc.CommandError):
        # an unknown --revision, or a database at a revision this code does not know
        return f"migrations: {exc}", EXIT_FAILED
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror or exc}{where}", EXIT_FAILED
    return None


def _database_error(exc: BaseException) -> str | None:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    orig: BaseException | None
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        unreachable = bool(
            isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or exc.connection_invalidated
        )
    else:
        # raised by the driver itself: `fibosms send` records a plain message through
        # psycopg or sqlite3 alone (producer.oneshot)
        drivers = [sys.modules.get(name) for name in ("psycopg", "sqlite3")]
        driver = next((d for d in drivers if d is not None and isinstance(exc, d.Error)), None)
        if driver is None:
            return None
        orig = exc
        unreachable = isinstance(exc, driver.OperationalError | driver.InterfaceError)
    detail = one_line(str(orig).split("\n", 1)[0]) if orig is not None else type(exc).__name__
    if getattr(orig, "sqlstate", None) in _PG_NOT_MIGRATED or any(
        words in detail for words in _SQLITE_NOT_MIGRATED
    ):
        return NOT_MIGRATED
    url = _database_url()
    if unreachable:
        where = f" at {_redact(url)}" if url else ""
        return f"cannot reach the database{where}: {_scrub(detail, url)}"
    # the driver's first line only: its DETAIL lines may quote a row's values
    return f"database: {type(orig).__name__}: {_scrub(detail, url)}"


def _broker_error(exc: BaseException) -> str | None:
    kombu_exc = sys.modules.get("kombu.exceptions")
    if kombu_exc is None or not isinstance(exc, kombu_exc.OperationalError):
        return None
    s = _cached_settings()
    url = s.broker_url if s is not None else None
    where = f" at {_redact(url)}" if url else ""
    return f"cannot reach the broker{where}: {_scrub(str(exc), url)}"


def _redact(url: str) -> str:
    from worker.settings import redact_url

    return redact_url(url)


def _scrub(text: str, url: str | None) -> str:
    """``text`` without the password of ``url``, should a driver quote it."""
    if url:
        from urllib.parse import unquote, urlsplit

        password = urlsplit(url).password
        if password:
            for secret in {password, unquote(password)}:
                text = text.replace(secret, "***")
    return text


def _cached_settings() -> Settings | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    cached: Settings | None = ctx.find_root().meta.get(_SETTINGS_KEY)
    return cached


def _database_url() -> str | None:
    s = _cached_settings()
    return s.database_url if s is not None else None


def settings() -> Settings:
    """The settings, read once per invocation (a SettingsError names the variable)."""
    ctx = click.get_current_context()
    cached = ctx.find_root().meta.get(_SETTINGS_KEY)
    if cached is None:
        from worker.settings import Settings, SettingsError

        try:
            cached = Settings.from_env()
        except UnicodeDecodeError:
            # not the decoder's message: it quotes a byte of the file, which may be the password
            raise SettingsError(
                "a settings file (.env or a FIBOSMS_*_FILE) is not valid UTF-8"
            ) from None
        ctx.find_root().meta[_SETTINGS_KEY] = cached
    return cached


def database() -> Any:
    """The ledger named by the settings (the engine connects on first use)."""
    from worker.ledger.db import Database

    return Database(settings().database_url)


def publisher() -> Any:
    """A publisher on the broker named by the settings: Celery's task messages, written
    through kombu without building a Celery app (``worker.publish.BrokerPublisher``)."""
    from worker.publish import broker_publisher

    return broker_publisher(settings())


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """Print ``data``: one JSON document with ``--json``, else ``text(data)``."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        click.echo(text(data))


def format_status(d: dict[str, Any]) -> str:
    """A message's fields, one ``name: value`` a line (the empty ones left out), then its
    attempt history, one attempt a line."""
    lines = [f"{k}: {v}" for k, v in d.items() if v is not None and k != "attempts_history"]
    history = d.get("attempts_history") or []
    if history:
        lines.append("attempts history:")
        lines.extend(_format_attempt(a) for a in history)
    return "\n".join(lines)


def _format_attempt(a: dict[str, Any]) -> str:
    marks = [name for name in ("ambiguous", "guessed", "late") if a.get(name)]
    code = "" if a.get("code") is None else f" code {a['code']}"
    return (
        f"  #{a['attempt']} claim {a['claim']} {a['claimed_at']} -> {a['recorded_at']}: "
        f"{a['status']}{code}{' (' + ', '.join(marks) + ')' if marks else ''}"
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")

#: options for the commands that hand their arguments to Celery or Flower untouched
PASSTHROUGH: dict[str, Any] = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": [],
}
