"""The ledger: the database is the source of truth, the broker only carries ids."""

from worker.ledger.db import Database, make_engine
from worker.ledger.models import Base, Failure, Message, Status

__all__ = ["Base", "Database", "Failure", "Message", "Status", "make_engine"]
