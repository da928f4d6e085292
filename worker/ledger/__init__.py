"""The ledger: the database is the source of truth, the broker only carries ids.

Its names below are imported on first use: they bring SQLAlchemy, which a process that only
records one message through the driver (``worker.ledger.oneshot``) does without.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.ledger.db import Database, make_engine
    from worker.ledger.models import Base, Failure, Message, Status

__all__ = ["Base", "Database", "Failure", "Message", "Status", "make_engine"]

_FROM = {
    "Database": "worker.ledger.db",
    "make_engine": "worker.ledger.db",
    "Base": "worker.ledger.models",
    "Failure": "worker.ledger.models",
    "Message": "worker.ledger.models",
    "Status": "worker.ledger.models",
}


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
