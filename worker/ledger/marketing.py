"""The advertising rules at the claim: suppression, cancelled campaigns, quiet hours, the cap.

:func:`screen` runs inside the claim's transaction, on the ids the plain claim left (it
never claims a ``marketing`` row, see ``worker.ledger.claims``), and returns the marketing
ids that may be claimed now. Everything else it meets is settled by a conditional
statement that names the state it expects:

- a message of a suppressed kind to a listed number becomes ``suppressed``;
- a message of a cancelled campaign becomes ``cancelled``;
- outside the window a marketing message stays ``queued``/``retrying`` with ``hold_reason``
  ``quiet_hours``, due when the window opens, spread at the release rate;
- over the daily cap, it is held with ``daily_cap`` until its number's oldest counted send
  leaves the 24 hours.

The cap is race-free across workers and machines: the claim first writes its numbers' rows
in ``sms_cap_counters`` (in key order, so two claims never deadlock). On PostgreSQL that
locks them until the claim commits; SQLite serialises writers anyway. Only then are the
numbers' sends of the last 24 hours counted, so a second worker waits for the first's
claims and counts them. A hold spends no attempt and no claim token.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.kinds import Kind
from worker.ledger.models import (
    SENDABLE,
    AccountState,
    Campaign,
    CapCounter,
    HoldReason,
    Message,
    Status,
    Suppression,
    UTCDateTime,
)
from worker.rules.marketing import (
    CAP_WINDOW,
    MarketingPolicy,
    cap_allows,
    cap_release,
    in_window,
    next_opening,
    release_times,
)

_M: Table = Message.__table__  # type: ignore[assignment]
_SUP: Table = Suppression.__table__  # type: ignore[assignment]
_CAMP: Table = Campaign.__table__  # type: ignore[assignment]
_CAP: Table = CapCounter.__table__  # type: ignore[assignment]
_ACCOUNT: Table = AccountState.__table__  # type: ignore[assignment]

#: ``last_error`` of a message stopped by the suppression list
SUPPRESSED_ERROR = "number on the suppression list"
#: ``last_error`` of a message whose campaign was cancelled
CANCELLED_ERROR = "campaign cancelled"

LISTED = exists().where(_SUP.c.phone == _M.c.recipient)
CANCELLED_CAMPAIGN = exists().where(
    _CAMP.c.name == _M.c.campaign, _CAMP.c.cancelled_at.is_not(None)
)


def screen(
    conn: Connection,
    ids: Sequence[int],
    *,
    now: datetime,
    due_by: datetime,
    policy: MarketingPolicy,
) -> list[int]:
    """Settle what must not go among ``ids``; the marketing ids that may be claimed now."""
    if not ids:
        return []
    ids = list(ids)
    if policy.suppress_kinds:
        suppress(conn, ids, kinds=policy.suppress_kinds, now=now)
    cancel_listed(conn, ids, now=now)
    rows = conn.execute(
        select(_M.c.id, _M.c.recipient, _M.c.expires_at)
        .where(
            _M.c.id.in_(ids),
            _M.c.kind == Kind.MARKETING.value,
            _M.c.status.in_(SENDABLE),
            _M.c.next_attempt_at <= due_by,
            or_(_M.c.expires_at.is_(None), _M.c.expires_at > now),
            ~exists().where(_ACCOUNT.c.paused.is_(True)),
        )
        .order_by(_M.c.id)
    ).all()
    if not rows:
        return []
    if not in_window(now, policy.window):
        _hold_for_window(conn, [(r.id, r.expires_at) for r in rows], now=now, policy=policy)
        return []
    if policy.daily_cap == 0:
        return [r.id for r in rows]
    return _within_cap(conn, rows, now=now, cap=policy.daily_cap)


def suppress(conn: Connection, ids: Sequence[int], *, kinds: frozenset[str], now: datetime) -> int:
    """Sendable messages of ``kinds`` to listed numbers among ``ids`` → ``suppressed``."""
    result = conn.execute(
        update(_M)
        .where(
            _M.c.id.in_(list(ids)),
            _M.c.status.in_(SENDABLE),
            _M.c.kind.in_(sorted(kinds)),
            LISTED,
        )
        .values(
            status=Status.SUPPRESSED.value,
            hold_reason=None,
            last_error=SUPPRESSED_ERROR,
            published_at=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)


def cancel_listed(conn: Connection, ids: Sequence[int], *, now: datetime) -> int:
    """Sendable messages among ``ids`` whose campaign was cancelled → ``cancelled``."""
    result = conn.execute(
        update(_M)
        .where(
            _M.c.id.in_(list(ids)),
            _M.c.status.in_(SENDABLE),
            _M.c.campaign.is_not(None),
            CANCELLED_CAMPAIGN,
        )
        .values(
            status=Status.CANCELLED.value,
            hold_reason=None,
            last_error=CANCELLED_ERROR,
            published_at=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)


def hold(
    conn: Connection, until: Sequence[tuple[int, datetime]], reason: HoldReason, now: datetime
) -> int:
    """Leave sendable rows waiting, each due at its time, attempts and token untouched."""
    if not until:
        return 0
    statement = (
        update(_M)
        # no IN (…): an expanding list cannot be sent as an executemany
        .where(_M.c.id == bindparam("mid"), or_(*(_M.c.status == s for s in SENDABLE)))
        .values(
            hold_reason=reason.value,
            next_attempt_at=bindparam("due", type_=UTCDateTime()),
            published_at=None,
            updated_at=now,
        )
    )
    result = conn.execute(statement, [{"mid": mid, "due": due} for mid, due in until])
    return int(result.rowcount)


def _hold_for_window(
    conn: Connection,
    rows: Sequence[tuple[int, datetime | None]],
    *,
    now: datetime,
    policy: MarketingPolicy,
) -> None:
    opening = next_opening(now, policy.window)
    dues = release_times(
        opening,
        len(rows),
        already_held=_held_for(conn, opening),
        rate=policy.release_rate,
        window=policy.window,
    )
    hold(
        conn,
        [(mid, _not_after(due, expires)) for (mid, expires), due in zip(rows, dues, strict=True)],
        HoldReason.QUIET_HOURS,
        now,
    )


def _held_for(conn: Connection, opening: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(_M)
            .where(
                _M.c.status.in_(SENDABLE),
                _M.c.hold_reason == HoldReason.QUIET_HOURS.value,
                _M.c.next_attempt_at >= opening,
            )
        ).scalar_one()
    )


def held_for_opening(session: Session, opening: datetime) -> int:
    """Messages held for the marketing hours that go at ``opening`` or later: the queue a
    new hold joins at the back of."""
    return _held_for(session.connection(), opening)


def _not_after(due: datetime, expires: datetime | None) -> datetime:
    """A hold ends no later than the message's expiry, so it expires on time."""
    return due if expires is None or due < expires else expires


def _within_cap(conn: Connection, rows: Sequence[object], *, now: datetime, cap: int) -> list[int]:
    by_phone: dict[str, list[tuple[int, datetime | None]]] = defaultdict(list)
    for row in rows:
        by_phone[row.recipient].append((row.id, row.expires_at))  # type: ignore[attr-defined]
    phones = sorted(by_phone)
    lock_numbers(conn, phones, now)
    since = now - CAP_WINDOW
    sends: dict[str, list[datetime]] = defaultdict(list)
    for phone, status, sent_at, updated_at in conn.execute(
        select(_M.c.recipient, _M.c.status, _M.c.sent_at, _M.c.updated_at).where(
            _M.c.recipient.in_(phones),
            _M.c.kind == Kind.MARKETING.value,
            or_(
                _M.c.status == Status.SENDING.value,
                and_(_M.c.sent_at.is_not(None), _M.c.sent_at > since),
                # an attempt whose outcome is unknown may have reached the handset: it
                # counts, as of the row's last change, unless the message was sent since
                and_(
                    _M.c.sent_at.is_(None),
                    _M.c.ambiguous_attempts > 0,
                    _M.c.updated_at > since,
                ),
            ),
        )
    ):
        if status == Status.SENDING.value:
            sends[phone].append(now)
        else:
            sends[phone].append(sent_at if sent_at is not None else updated_at)
    allowed: list[int] = []
    held: list[tuple[int, datetime]] = []
    for phone in phones:
        waiting = by_phone[phone]
        room = cap_allows(len(sends[phone]), cap)
        allowed.extend(mid for mid, _ in waiting[:room])
        if len(waiting) > room:
            release = cap_release(sends[phone] + [now] * room, cap, now)
            held.extend((mid, _not_after(release, exp)) for mid, exp in waiting[room:])
    hold(conn, held, HoldReason.DAILY_CAP, now)
    return allowed


def number_key(phone: str) -> str:
    """The cap row's key for a number: a digest, so the table holds no number in clear."""
    return hashlib.sha256(phone.encode()).hexdigest()


def lock_numbers(conn: Connection, phones: Sequence[str], now: datetime) -> None:
    """Write (and so lock, until the transaction ends) each number's cap row, in key order."""
    if not phones:
        return
    keys = sorted({number_key(p) for p in phones})
    # one cached statement, executed for each key in order (not a VALUES list built, and
    # compiled, afresh for every batch)
    conn.execute(_LOCK_NUMBER[conn.dialect.name], [{"k": k, "at": now} for k in keys])


def _lock_number_statement(insert: Any) -> Any:
    statement = insert(_CAP).values(number_key=bindparam("k"), locked_at=bindparam("at"))
    return statement.on_conflict_do_update(
        index_elements=["number_key"], set_={"locked_at": statement.excluded.locked_at}
    )


_LOCK_NUMBER = {
    "postgresql": _lock_number_statement(postgresql.insert),
    "sqlite": _lock_number_statement(sqlite.insert),
}


def held_counts(conn: Connection) -> dict[str, int]:
    """Queued or retrying messages held back, by hold reason (for the metrics)."""
    rows = conn.execute(
        select(_M.c.hold_reason, func.count())
        .where(_M.c.status.in_(SENDABLE), _M.c.hold_reason.is_not(None))
        .group_by(_M.c.hold_reason)
    )
    counts = {reason.value: 0 for reason in HoldReason}
    counts.update({str(reason): int(n) for reason, n in rows})
    return counts


def suppression_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_SUP)).scalar_one())
