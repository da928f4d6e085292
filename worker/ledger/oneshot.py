"""One plain message recorded through the database driver alone, for a process that records
one message and exits (``fibosms send``).

Importing SQLAlchemy costs such a process about 0.2 s, more than all the rest of its work. On
PostgreSQL the statement is the one :func:`worker.ledger.outbox.insert_due_now` runs through
SQLAlchemy: one autocommitted INSERT whose times are the server's ``statement_timestamp()``
(the ledger's clock), so the row is durable when it returns. On SQLite (the embedded default)
it is what the producer's transaction does there: ``BEGIN IMMEDIATE``, SQLite's own 'now' to
the millisecond, the INSERT, COMMIT, with the times stored as SQLAlchemy stores them.
tests/integration/test_oneshot.py holds the paths to the same row, column by column.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from worker.states import SENDABLE

if TYPE_CHECKING:
    import sqlite3

#: a row due at once gets these times from the server's clock, not from the caller
DUE_NOW_COLUMNS = ("created_at", "updated_at", "next_attempt_at", "published_at")

#: ``sms_messages``' columns that have a default in the model (worker.ledger.models), which
#: SQLAlchemy fills in for an INSERT that leaves them out: here they are written out
DEFAULTS: Mapping[str, int] = {
    "attempts": 0,
    "ambiguous_attempts": 0,
    "claims": 0,
    "attempts_at_replay": 0,
}

#: every column of ``sms_messages`` a new row may name (the id comes from the sequence);
#: a row naming another is refused before any SQL is built
COLUMNS = frozenset(
    {
        "idempotency_key",
        "recipient",
        "text",
        "sender",
        "service_type",
        "segments",
        "kind",
        "queue",
        "status",
        "attempts",
        "ambiguous_attempts",
        "claims",
        "attempts_at_replay",
        "guessed_claim",
        "last_code",
        "last_error",
        "next_attempt_at",
        "expires_at",
        "published_at",
        "claimed_at",
        "created_at",
        "first_attempt_at",
        "sent_at",
        "updated_at",
        "campaign",
        "hold_reason",
    }
)

_SCHEMES = ("postgresql", "postgresql+psycopg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
#: how long a write waits for another writer of the file (as worker.ledger.db's engine)
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
#: how SQLAlchemy's SQLite dialect stores a DateTime (naive UTC, as models.UTCDateTime binds)
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class Ledger(Protocol):
    """What ``fibosms send``'s one-shot path records through."""

    def ready(self) -> bool:
        """Whether this path may record here (else the caller takes the full producer)."""
        ...

    def insert_due_now(self, row: Mapping[str, Any]) -> tuple[int, datetime]: ...

    def mark_unpublished(self, message_id: int) -> None: ...


def ledger_for(database_url: str) -> Ledger | None:
    """The driver-only ledger for ``FIBOSMS_DATABASE_URL``: PostgreSQL through psycopg, or an
    SQLite file; None for anything else."""
    dsn = dsn_for(database_url)
    if dsn is not None:
        return PostgresLedger(dsn)
    path = sqlite_path_for(database_url)
    return None if path is None else SqliteLedger(path)


class PostgresLedger:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def ready(self) -> bool:
        return True  # an unreachable or unmigrated server is reported by the caller

    def insert_due_now(self, row: Mapping[str, Any]) -> tuple[int, datetime]:
        return insert_due_now(self.dsn, row)

    def mark_unpublished(self, message_id: int) -> None:
        mark_unpublished(self.dsn, message_id)


def sqlite_path_for(url: str) -> Path | None:
    """The file an SQLite URL names (``sqlite:///relative`` or ``sqlite:////absolute``, the
    ``sqla+`` of kombu's transport allowed), or None: not SQLite, in memory, or with options."""
    scheme, sep, rest = url.removeprefix("sqla+").partition("://")
    if not sep or scheme not in _SQLITE_SCHEMES or not rest.startswith("/"):
        return None
    path = rest[1:]
    if not path or path == ":memory:" or "?" in path or path.startswith("file:"):
        return None
    return Path(path)


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection that drives its own transactions, as worker.ledger.db's engine sets up."""
    import sqlite3  # here: a send on PostgreSQL and Redis has no use for it

    connection = sqlite3.connect(
        path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, isolation_level=None
    )
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def sqlite_has_table(path: Path, table: str) -> bool:
    """Whether the SQLite file exists and holds ``table`` (read without creating the file)."""
    if not path.is_file():
        return False
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as c:
            found = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
            ).fetchone()
    except sqlite3.Error:
        return False
    return found is not None


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def ready(self) -> bool:
        # a missing file or table is the producer's to report ("run fibosms db upgrade")
        return sqlite_has_table(self.path, "sms_messages")

    def insert_due_now(self, row: Mapping[str, Any]) -> tuple[int, datetime]:
        """The producer's transaction on SQLite: the write lock first, SQLite's 'now' to the
        millisecond for the four times, the INSERT; the id and that time."""
        values = {**DEFAULTS, **{k: v for k, v in row.items() if k not in DUE_NOW_COLUMNS}}
        unknown = set(values) - COLUMNS
        if unknown:
            raise ValueError(f"not a column of sms_messages: {sorted(unknown)[0]}")
        with closing(sqlite_connect(self.path)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                (text,) = connection.execute(
                    "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
                ).fetchone()
                at = datetime.fromisoformat(text)
                names = [*values, *DUE_NOW_COLUMNS]
                bound = [_sqlite_value(values[n]) for n in values]
                bound += [at.strftime(SQLITE_TIME_FORMAT)] * len(DUE_NOW_COLUMNS)
                marks = ", ".join("?" for _ in names)
                columns = ", ".join(f'"{n}"' for n in names)  # names from COLUMNS only
                cursor = connection.execute(
                    f"INSERT INTO sms_messages ({columns}) VALUES ({marks})",  # noqa: S608
                    bound,
                )
                message_id = cursor.lastrowid
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        assert message_id is not None
        return int(message_id), at.replace(tzinfo=UTC)

    def mark_unpublished(self, message_id: int) -> None:
        marks = ", ".join("?" for _ in SENDABLE)
        with closing(sqlite_connect(self.path)) as connection:
            connection.execute(
                "UPDATE sms_messages SET published_at = NULL "  # noqa: S608 - placeholders only
                f"WHERE id = ? AND status IN ({marks})",
                [message_id, *SENDABLE],
            )


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy binds it on SQLite: an aware time as naive UTC text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime(SQLITE_TIME_FORMAT)
    return _plain(value)


def dsn_for(database_url: str) -> str | None:
    """A libpq URI for ``FIBOSMS_DATABASE_URL`` when it names PostgreSQL through psycopg (the
    only driver the project installs), else None.

    SQLAlchemy's URL for psycopg is libpq's own with the driver in the scheme: the same
    percent-escaped user and password, and query parameters that SQLAlchemy hands to
    ``psycopg.connect`` as the libpq keywords they are in a URI.
    """
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in _SCHEMES:
        return None
    return f"postgresql://{rest}"


def insert_due_now(dsn: str, row: Mapping[str, Any]) -> tuple[int, datetime]:
    """Insert one ``sms_messages`` row due at once, in one autocommitted statement on a new
    connection; its id and the server's time it was recorded at.

    Raises ``psycopg.Error`` as the driver raised it (its SQLSTATE tells a missing table).
    """
    import psycopg
    from psycopg import sql

    values = {**DEFAULTS, **{k: v for k, v in row.items() if k not in DUE_NOW_COLUMNS}}
    unknown = set(values) - COLUMNS
    if unknown:
        raise ValueError(f"not a column of sms_messages: {sorted(unknown)[0]}")
    names = list(values)
    statement = sql.SQL(
        "INSERT INTO sms_messages ({names}) VALUES ({values}) RETURNING id, created_at"
    ).format(
        names=sql.SQL(", ").join(sql.Identifier(n) for n in [*names, *DUE_NOW_COLUMNS]),
        values=sql.SQL(", ").join(
            [
                *(sql.Placeholder() for _ in names),
                *(sql.SQL("statement_timestamp()") for _ in DUE_NOW_COLUMNS),
            ]
        ),
    )
    with psycopg.connect(dsn, autocommit=True) as connection:
        found = connection.execute(statement, [_plain(values[n]) for n in names]).fetchone()
    assert found is not None  # INSERT … RETURNING gives its row
    message_id, at = found
    return int(message_id), at.astimezone(UTC)


def mark_unpublished(dsn: str, message_id: int) -> None:
    """The row's publish failed: the sweep publishes it (as ``claims.mark_unpublished``)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "UPDATE sms_messages SET published_at = NULL WHERE id = %s AND status = ANY(%s)",
            [message_id, list(SENDABLE)],
        )


def _plain(value: Any) -> Any:
    """A value as SQLAlchemy binds it: a str enum as its value (psycopg would dump an
    ``Enum`` by its name)."""
    if isinstance(value, str) and type(value) is not str:
        return str.__str__(value)
    return value
