"""``api_keys``: who may call the HTTP API, with which scopes. Every statement on the table.

A token is ``fsk_<prefix>_<secret>``. Only the prefix (to find the row) and the SHA-256
of the whole token are stored; the token is shown once, when the key is made. A token is
256 random bits, so a plain hash is enough (no slow password hash is needed), and the
comparison of hashes is done in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.ledger.models import Base, Id, UTCDateTime

#: the scopes a key may hold: send messages; read messages, failures, the account; replay
#: and resume
SCOPES: tuple[str, ...] = ("send", "read", "admin")
TOKEN_PREFIX = "fsk_"  # noqa: S105 - the public start of every token
MAX_NAME_LENGTH = 64


class ApiKey(Base):
    """One API key: its name, scopes and times; never the token."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), unique=True)
    #: the public part of the token, how a presented token finds its row
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    #: SHA-256 of the whole token, hex
    token_hash: Mapped[str] = mapped_column(String(64))
    #: comma-separated, from :data:`SCOPES`
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class KeyRecord:
    """An API key as it may be shown: everything but the hash."""

    id: int
    name: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyNameTaken(ValueError):
    """A key with that name exists already (revoked or not)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def split_token(token: str) -> str | None:
    """The prefix of a well-formed token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not prefix or not secret or len(prefix) > 32:
        return None
    return prefix


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def create_key(
    session: Session, name: str, scopes: frozenset[str], *, now: datetime
) -> tuple[KeyRecord, str]:
    """Make a key; returns it and its token (the only time the token exists)."""
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyNameTaken(f"an API key named {name!r} exists already")
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        token_hash=hash_token(token),
        scopes=",".join(s for s in SCOPES if s in scopes),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _record(row), token


def list_keys(session: Session) -> list[KeyRecord]:
    """Every key, revoked ones too, by name."""
    return [_record(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.name))]


def revoke_key(session: Session, name: str, *, now: datetime) -> bool:
    """Revoke the key ``name``; False when there is no such key that is not revoked yet."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def verify_token(session: Session, token: str) -> KeyRecord | None:
    """The live key this token belongs to, or None (malformed, unknown, wrong or revoked)."""
    prefix = split_token(token)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, hash_token(token)):
        return None
    return _record(row)


def touch_key(session: Session, key_id: int, *, now: datetime) -> None:
    """Record that the key was used at ``now``."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
