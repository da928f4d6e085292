"""The account's pause: after an account-wide code, nothing is sent until it is resumed.

The message that met the code is dead-lettered; every other message waits in the ledger
with its attempts untouched. After code 14 (balance) the first balance poll that sees money
resumes by itself; after the others an operator runs ``fibosms resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.codes import INSUFFICIENT_BALANCE
from worker.ledger.models import AccountState

ACCOUNT_ROW = 1


@dataclass(frozen=True)
class Pause:
    paused: bool
    code: int | None = None
    reason: str | None = None
    since: datetime | None = None
    message_id: int | None = None

    @property
    def resumes_by_itself(self) -> bool:
        return self.paused and self.code == INSUFFICIENT_BALANCE

    def as_dict(self) -> dict[str, object]:
        return {
            "paused": self.paused,
            "code": self.code,
            "reason": self.reason,
            "since": self.since.isoformat() if self.since else None,
            "message_id": self.message_id,
            "resumes": (
                None if not self.paused
                else "on the first balance poll that sees money" if self.resumes_by_itself
                else "by `fibosms resume`"
            ),
        }


def current_pause(session: Session) -> Pause:
    row = session.get(AccountState, ACCOUNT_ROW)
    if row is None or not row.paused:
        return Pause(paused=False)
    return Pause(True, row.pause_code, row.pause_reason, row.paused_at, row.paused_by_message)


def pause(
    session: Session, *, code: int | None, reason: str, message_id: int, now: datetime
) -> bool:
    """Pause sending; True when this call paused it (False: it already was)."""
    result = session.execute(
        update(AccountState)
        .where(AccountState.id == ACCOUNT_ROW, AccountState.paused.is_(False))
        .values(
            paused=True,
            pause_code=code,
            pause_reason=reason,
            paused_at=now,
            paused_by_message=message_id,
            resumed_at=None,
            resumed_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def resume(session: Session, *, by: str, now: datetime, only_code: int | None = None) -> bool:
    """Resume sending; True when it was paused (and, with ``only_code``, for that code)."""
    query = update(AccountState).where(
        AccountState.id == ACCOUNT_ROW, AccountState.paused.is_(True)
    )
    if only_code is not None:
        query = query.where(AccountState.pause_code == only_code)
    result = session.execute(
        query.values(paused=False, resumed_at=now, resumed_by=by[:64]).execution_options(
            synchronize_session=False
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_paused(session: Session) -> bool:
    return bool(
        session.scalar(select(AccountState.paused).where(AccountState.id == ACCOUNT_ROW))
    )
