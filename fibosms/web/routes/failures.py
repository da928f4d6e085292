"""``/v1/failures``: dead letters, and replaying them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from fibosms.web.auth import require, resources
from fibosms.web.cursors import failure_cursor, read_failure_cursor
from fibosms.web.problems import ApiError
from fibosms.web.resources import Resources
from fibosms.web.schemas import (
    MAX_CODE,
    FailurePage,
    ReplayIn,
    ReplayOut,
    When,
    problem_responses,
)
from worker.inspect import failure_dict
from worker.ledger.apikeys import KeyRecord
from worker.ledger.listing import list_failures
from worker.replay import replay

router = APIRouter(prefix="/v1/failures", tags=["failures"],
                   responses=problem_responses(400, 401, 403, 422, 429, 503))

Read = Annotated[KeyRecord, Depends(require("read"))]
Admin = Annotated[KeyRecord, Depends(require("admin"))]
Res = Annotated[Resources, Depends(resources)]

#: characters of ``replayed_by`` (the column's width)
_BY_LENGTH = 64


@router.get("", response_model=FailurePage, summary="Dead letters, newest first",
            response_model_by_alias=True)
def get_failures(
    key: Read,
    res: Res,
    code: Annotated[int | None, Query(ge=-MAX_CODE - 1, le=MAX_CODE)] = None,
    since: Annotated[When | None, Query(description="failed at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Open failures (not replayed yet); the numbers masked."""
    before = read_failure_cursor(cursor) if cursor is not None else None
    with res.db.sessions() as session:
        rows = list_failures(session, code=code, since=since, before=before, limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "items": [failure_dict(f) for f in page],
        "next": failure_cursor(page[-1].failed_at, page[-1].id) if more else None,
    }


@router.post("/replay", response_model=ReplayOut, summary="Requeue dead messages",
             responses=problem_responses(413, 415))
def post_replay(body: ReplayIn, key: Admin, res: Res) -> dict[str, Any]:
    """By ids, or every open failure with a FIBO code; each gets a fresh attempt budget.
    `not_dead` lists the ids that were not dead (left alone)."""
    if (body.ids is None) == (body.code is None):
        raise ApiError(422, "the request is not valid",
                       errors=[{"field": "body", "reason": "give either ids or code"}])
    ids = list(body.ids or ())
    done = replay(res.db, res.publisher, message_ids=ids, code=body.code,
                  by=f"api:{key.name}"[:_BY_LENGTH])
    return {"replayed": done, "not_dead": sorted(set(ids) - set(done))}
