"""Engines and sessions, built per process (after a fork), never at import time."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

#: milliseconds a SQLite writer waits for the lock before giving up
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: seconds a pooled PostgreSQL connection may rest before it is tested on checkout
PING_AFTER_IDLE_SECONDS = 1.0

_CHECKED_IN = "fibosms.checked_in"


def dialect_insert(session: Session) -> Callable[..., Any]:
    """The session's database's own INSERT construct (PostgreSQL's or SQLite's, the two the
    ledger runs on): the one with ``on_conflict_do_nothing``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine fit for several worker threads writing at once, on SQLite or PostgreSQL.

    Its errors never render the bound parameters: those hold phone numbers and texts.
    """
    kwargs["hide_parameters"] = True
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        _tune_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # above a worker's thread count (-c 16 by default in deploy/), so connections are reused
    # rather than opened and closed around each task
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)  # survive a PostgreSQL restart
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use when it has been idle PING_AFTER_IDLE_SECONDS.

    SQLAlchemy's ``pool_pre_ping`` tests every one, which costs a round trip on each
    checkout: a third more round trips for one ``enqueue_sms``. A connection back from use
    moments ago is trusted; if the server went away in that moment, the statement fails,
    as it would had the server gone between a ping and the statement, and SQLAlchemy then
    replaces every connection of the pool. A dead idle one is replaced before use, unseen.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # opened just now, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # the pool closes this connection and hands out a new one
            raise DisconnectionError(f"pooled connection is gone: {type(exc).__name__}") from exc


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # let SQLAlchemy drive transactions, so BEGIN IMMEDIATE below takes effect
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" at once, without waiting for the busy timeout
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and session factory for this process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.pid = os.getpid()
        # the autocommit connection kept between calls (see autocommit())
        self._held_lock = threading.Lock()
        self._held: Connection | None = None
        self._held_pid = 0
        self._held_used = 0.0

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits by itself, for work that is one
        statement.

        One such connection is kept open between calls, for whichever thread finds it free:
        a caller recording messages one by one then pays no pool checkout for each. It is
        tested before use once it has rested PING_AFTER_IDLE_SECONDS, as the pool's are, and
        dropped after any error. A thread that finds it taken gets one from the pool.
        """
        if not self._held_lock.acquire(blocking=False):
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield conn
            return
        try:
            conn = self._held_connection()
            try:
                yield conn
            except BaseException:
                self._drop_held()
                raise
            self._held_used = time.monotonic()
        finally:
            self._held_lock.release()

    def _held_connection(self) -> Connection:
        """The kept autocommit connection, tested or made afresh as needed (lock held)."""
        if self._held is not None and self._held_pid != os.getpid():
            self._held = None  # the parent's, after a fork: neither used nor closed here
        if self._held is not None and time.monotonic() - self._held_used >= (
            PING_AFTER_IDLE_SECONDS
        ):
            dbapi_conn = self._held.connection.dbapi_connection
            try:
                if dbapi_conn is None:
                    raise ConnectionError("the kept connection was released")
                self.engine.dialect.do_ping(dbapi_conn)
            except Exception:  # gone while it rested: a new one below
                self._drop_held()
        if self._held is None:
            self._held = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._held_pid = os.getpid()
        return self._held

    def _drop_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._held_pid == os.getpid():
            with contextlib.suppress(Exception):
                held.invalidate()
                held.close()

    def dispose(self) -> None:
        with self._held_lock:
            self._drop_held()
        self.engine.dispose()
