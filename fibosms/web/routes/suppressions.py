"""``/v1/suppressions``: the numbers that get no message of the suppressed kinds.

The list shows numbers in full (national form): it is the list of who must not be written
to, and a key needs the ``read`` scope to see it. Adding needs ``send`` (an application
records the opt-outs it receives); removing, which lets messages go to a number again,
needs ``admin``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from fibosms.web.auth import require, resources
from fibosms.web.campaign_schemas import SuppressIn, SuppressionPage, SuppressOut
from fibosms.web.cursors import read_suppression_cursor, suppression_cursor
from fibosms.web.problems import ApiError
from fibosms.web.resources import Resources
from fibosms.web.schemas import MAX_PHONE_LENGTH, problem_responses
from worker.campaigns import parse_phones
from worker.clock import now as utcnow
from worker.errors import ValidationError
from worker.ledger.apikeys import KeyRecord
from worker.ledger.suppressions import (
    API,
    add_suppressions,
    list_suppressions,
    remove_suppressions,
    suppression,
)
from worker.rules.phone import normalize_phone

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"],
                   responses=problem_responses(400, 401, 403, 422, 429, 503))

Send = Annotated[KeyRecord, Depends(require("send"))]
Read = Annotated[KeyRecord, Depends(require("read"))]
Admin = Annotated[KeyRecord, Depends(require("admin"))]
Res = Annotated[Resources, Depends(resources)]
Phone = Annotated[str, Query(max_length=MAX_PHONE_LENGTH, description="in any written form")]


@router.get("", response_model=SuppressionPage, summary="The suppression list, by number")
def get_suppressions(
    key: Read,
    res: Res,
    phone: Phone | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """`phone` asks whether one number is listed (a page of at most one entry)."""
    after = read_suppression_cursor(cursor) if cursor is not None else None
    with res.db.sessions() as session:
        if phone is not None:
            wanted = _national(phone, "phone")
            found = suppression(session, wanted)
            rows = [] if found is None else [found]
        else:
            rows = list_suppressions(session, after=after, limit=limit + 1)
    page = rows[:limit]
    more = phone is None and len(rows) > limit
    return {
        "items": [{"phone": e.phone, "reason": e.reason, "source": e.source,
                   "created_at": e.created_at.isoformat()} for e in page],
        "next": suppression_cursor(page[-1].phone) if more else None,
    }


@router.post("", response_model=SuppressOut, responses=problem_responses(413, 415),
             summary="List numbers (source api)")
def post_suppressions(body: SuppressIn, key: Send, res: Res) -> dict[str, Any]:
    """A number already listed keeps its first entry; `added` counts the new ones."""
    numbers = parse_phones(list(body.phones))  # ValidationError names phones[i]
    with res.db.transaction() as session:
        added = add_suppressions(session, numbers, reason=body.reason, source=API, now=utcnow())
    return {"added": added, "given": len(set(numbers))}


@router.delete("/{phone}", status_code=204, responses=problem_responses(404),
               summary="Take a number off the list")
def delete_suppression(
    phone: Annotated[str, Path(max_length=MAX_PHONE_LENGTH, description="any written form")],
    key: Admin,
    res: Res,
) -> Response:
    number = _national(phone, "phone")
    with res.db.transaction() as session:
        removed = remove_suppressions(session, [number])
    if not removed:
        raise ApiError(404, "that number is not on the suppression list")
    return Response(status_code=204)


def _national(phone: str, field: str) -> str:
    try:
        return normalize_phone(phone)
    except ValidationError as exc:
        raise ApiError(422, "the request is not valid",
                       errors=[{"field": field, "reason": exc.reason}]) from None

