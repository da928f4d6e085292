"""The embedded broker's tables, written directly by a process that publishes once and exits
(``fibosms send`` on the defaults).

The embedded broker is kombu's SQLAlchemy transport on an SQLite file: a ``kombu_queue`` row
per queue, a ``kombu_message`` row per message (its payload the same JSON envelope kombu's
virtual transports store, ``visible`` 1, no timestamp, version 1). Importing kombu and
SQLAlchemy to write that one row costs such a process about 0.2 s, more than everything else
it does; this writes the same rows with the standard library, in one ``BEGIN IMMEDIATE``
transaction. tests/integration/test_oneshot.py compares them with kombu's rows and has a
worker consume them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from worker.ledger.oneshot import sqlite_connect, sqlite_has_table

#: kombu's default table names (fibosms sets no transport options for this broker)
QUEUE_TABLE = "kombu_queue"
MESSAGE_TABLE = "kombu_message"


def ready(path: Path) -> bool:
    """Whether the broker's tables exist (a worker creates them when it first connects)."""
    return sqlite_has_table(path, QUEUE_TABLE) and sqlite_has_table(path, MESSAGE_TABLE)


def put(path: Path, messages: Sequence[tuple[str, bytes]]) -> None:
    """Queue each ``(queue name, JSON envelope)``, all or none; raises ``sqlite3.Error``."""
    with closing(sqlite_connect(path)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            ids: dict[str, int] = {}
            for queue, payload in messages:
                if queue not in ids:
                    found = connection.execute(
                        "SELECT id FROM kombu_queue WHERE name = ?", [queue]
                    ).fetchone()
                    if found is None:
                        cursor = connection.execute(
                            "INSERT INTO kombu_queue (name) VALUES (?)", [queue]
                        )
                        found = (cursor.lastrowid,)
                    ids[queue] = int(found[0])
                connection.execute(
                    "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id) "
                    "VALUES (1, NULL, ?, 1, ?)",
                    [payload.decode("utf-8"), ids[queue]],
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
