"""Opaque page cursors: the last item's key, base64url. A bad cursor is a 422 on ``cursor``."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from fibosms.web.problems import ApiError
from fibosms.web.schemas import MAX_ID

#: characters; far above any cursor this module writes
MAX_CURSOR_LENGTH = 200


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, kind: str) -> list[str]:
    bad = ApiError(422, "the request is not valid",
                   errors=[{"field": "cursor", "reason": "not a cursor this API gave out"}])
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    head, _, rest = raw.partition(":")
    if head != kind or not rest:
        raise bad
    return rest.split("|")


def _id(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise ValueError(text)
    return value


def message_cursor(message_id: int) -> str:
    return _encode(f"m:{message_id}")


def read_message_cursor(cursor: str) -> int:
    """The id the next page starts below."""
    parts = _decode(cursor, "m")
    try:
        return _id(parts[0])
    except ValueError:
        raise ApiError(422, "the request is not valid",
                       errors=[{"field": "cursor", "reason": "not a cursor this API gave out"}]
                       ) from None


def failure_cursor(failed_at: datetime, failure_id: int) -> str:
    return _encode(f"f:{failed_at.astimezone(UTC).isoformat()}|{failure_id}")


def read_failure_cursor(cursor: str) -> tuple[datetime, int]:
    """The (failed_at, id) the next page starts below."""
    parts = _decode(cursor, "f")
    try:
        if len(parts) != 2:
            raise ValueError(cursor)
        at = datetime.fromisoformat(parts[0])
        if at.tzinfo is None:
            raise ValueError(cursor)
        return at.astimezone(UTC), _id(parts[1])
    except (ValueError, OverflowError):
        raise ApiError(422, "the request is not valid",
                       errors=[{"field": "cursor", "reason": "not a cursor this API gave out"}]
                       ) from None


def suppression_cursor(phone: str) -> str:
    return _encode(f"s:{phone}")


def read_suppression_cursor(cursor: str) -> str:
    """The number (national form) the next page starts after."""
    parts = _decode(cursor, "s")
    if len(parts) != 1 or not parts[0].isdigit() or len(parts[0]) > 15:
        raise ApiError(422, "the request is not valid",
                       errors=[{"field": "cursor", "reason": "not a cursor this API gave out"}])
    return parts[0]
