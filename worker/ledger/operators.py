"""``console_operators``: who may sign in to the console, and as what. Every statement on it.

A password is kept as its argon2 hash only. Each operator has a random ``session_key``
that signs their session cookies; replacing it (sign-out everywhere, a new password, the
account removed) makes every cookie signed with the old one worthless at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.ledger.models import Base, Id, UTCDateTime

#: viewer: reads every page; operator: also replays and resumes, and sees full numbers
ROLES: tuple[str, ...] = ("viewer", "operator")
MAX_NAME_LENGTH = 64
#: characters; a longer password is refused before it is hashed (argon2 on megabytes is slow)
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so that a wrong name costs what a wrong
    password costs (the time does not tell which names exist). Made on first use."""
    return _hasher.hash(secrets.token_urlsafe(16))


class Operator(Base):
    __tablename__ = "console_operators"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    session_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class OperatorRecord:
    """An operator as it may be shown: never the hash; ``session_key`` only for signing."""

    id: int
    name: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None
    session_key: str

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


class OperatorNameTaken(ValueError):
    """An operator with that name exists already."""


def _record(row: Operator) -> OperatorRecord:
    return OperatorRecord(row.id, row.name, row.role, row.created_at, row.last_sign_in_at,
                          row.session_key)


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be used, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password may have at most {MAX_PASSWORD_LENGTH} characters"
    return None


def add_operator(
    session: Session, name: str, password: str, *, role: str, now: datetime
) -> OperatorRecord:
    """Create an operator; raises :class:`OperatorNameTaken` or ValueError (role, password)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    if session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise OperatorNameTaken(f"an operator named {name!r} exists already")
    row = Operator(name=name, role=role, password_hash=_hasher.hash(password),
                   session_key=secrets.token_hex(32), created_at=now)
    session.add(row)
    session.flush()
    return _record(row)


def list_operators(session: Session) -> list[OperatorRecord]:
    """Every operator, by name."""
    return [_record(r) for r in session.scalars(select(Operator).order_by(Operator.name))]


def remove_operator(session: Session, name: str) -> bool:
    """Delete the operator ``name`` (their sessions end with the row); False: no such one."""
    result = session.execute(delete(Operator).where(Operator.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def operator_by_id(session: Session, operator_id: int) -> OperatorRecord | None:
    """The operator ``operator_id`` (one primary-key read: every console request asks it)."""
    row = session.get(Operator, operator_id)
    return None if row is None else _record(row)


def check_password(
    session: Session, name: str, password: str, *, now: datetime
) -> OperatorRecord | None:
    """The operator when ``password`` is theirs (their sign-in time recorded), else None.

    A wrong name costs an argon2 verification too."""
    if len(password) > MAX_PASSWORD_LENGTH or len(name) > MAX_NAME_LENGTH:
        return None
    row = session.scalar(select(Operator).where(Operator.name == name))
    try:
        _hasher.verify(row.password_hash if row is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.last_sign_in_at = now
    return _record(row)


def new_session_key(session: Session, operator_id: int) -> None:
    """End every session of the operator (their cookies no longer verify)."""
    session.execute(
        update(Operator).where(Operator.id == operator_id)
        .values(session_key=secrets.token_hex(32))
    )
