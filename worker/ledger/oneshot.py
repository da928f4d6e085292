"""One plain message recorded through the PostgreSQL driver alone, for a process that records
one message and exits (``fibosms send``).

Importing SQLAlchemy costs such a process about 0.2 s, more than all the rest of its work. The
statement is the one :func:`worker.ledger.outbox.insert_due_now` runs through SQLAlchemy: one
autocommitted INSERT whose times are the server's ``statement_timestamp()`` (the ledger's
clock), so the row is durable when it returns. tests/integration/test_oneshot.py holds the two
paths to the same row, column by column.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.states import SENDABLE

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
