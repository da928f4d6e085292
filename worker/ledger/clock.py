"""The ledger's clock: what every host compares the ledger's times with.

Hosts disagree about the time; the database is one. Everything written into the ledger
as "now" or "due at" by a worker, a producer or the sweep, and every "is it due yet",
"is it stalled", "is it inside the marketing hours" asked of it, takes this clock, so a
host whose own clock runs ahead or behind neither claims early nor takes over a live
attempt (``docs/multi-host.md``, "Clocks").

On PostgreSQL it is the server's ``statement_timestamp()``; on SQLite, SQLite's own
``'now'`` (the machine's clock: an SQLite ledger lives on one machine anyway), to the
millisecond.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, func, literal_column, select
from sqlalchemy.orm import Session

_POSTGRES = select(func.statement_timestamp())
_SQLITE = select(func.strftime("%Y-%m-%d %H:%M:%f", literal_column("'now'")))


def database_now(session: Session | Connection) -> datetime:
    """The database's current time, timezone-aware UTC (one round trip)."""
    conn = session.connection() if isinstance(session, Session) else session
    if conn.dialect.name == "sqlite":
        text = conn.execute(_SQLITE).scalar_one()
        return datetime.fromisoformat(str(text)).replace(tzinfo=UTC)
    value = conn.execute(_POSTGRES).scalar_one()
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError(f"the database's clock gave {value!r}, not an aware time")
    return value.astimezone(UTC)
