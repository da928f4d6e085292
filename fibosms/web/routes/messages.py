"""``/v1/messages``: hand messages over, read one, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import JSONResponse

from fibosms.web.auth import require, resources
from fibosms.web.cursors import message_cursor, read_message_cursor
from fibosms.web.problems import ApiError
from fibosms.web.resources import Resources
from fibosms.web.schemas import (
    MAX_ID,
    MAX_PHONE_LENGTH,
    BatchIn,
    BatchOut,
    KindName,
    MessageIn,
    MessageOut,
    MessagePage,
    StatusName,
    When,
    problem_responses,
)
from producer.validate import MAX_KEY_LENGTH
from worker.errors import IdempotencyConflict, ValidationError
from worker.inspect import message_dict, message_status
from worker.ledger.apikeys import KeyRecord
from worker.ledger.listing import list_messages, record_of
from worker.rules.phone import normalize_phone

router = APIRouter(prefix="/v1/messages", tags=["messages"],
                   responses=problem_responses(400, 401, 403, 422, 429, 503))

Send = Annotated[KeyRecord, Depends(require("send"))]
Read = Annotated[KeyRecord, Depends(require("read"))]
Res = Annotated[Resources, Depends(resources)]

#: what only a request with a body can meet
_POSTED = problem_responses(409, 413, 415)


@router.post(
    "",
    status_code=201,
    response_model=MessageOut,
    responses={200: {"model": MessageOut, "description": "the key's message, already accepted"},
               **_POSTED},
    summary="Accept one message",
)
def post_message(
    body: MessageIn,
    key: Send,
    res: Res,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_LENGTH)
    ] = None,
) -> JSONResponse:
    """Recorded before it is answered. The same `Idempotency-Key` with the same content
    answers 200 with the same message; with other content, 409."""
    options = body.model_dump(exclude={"phone", "text"}, exclude_none=True)
    accepted = res.producer.submit(
        body.phone, body.text, idempotency_key=idempotency_key, **options
    )
    # the answer is built here, in MessageOut's shape, not validated again on the way out
    if accepted.row is not None:
        # as recorded: the ledger is not read again for what this call just wrote
        return JSONResponse(message_dict(record_of(accepted.row)), status_code=201)
    return JSONResponse(_one(res, accepted.id), status_code=200)


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchOut,
    responses=_POSTED,
    summary="Accept up to 10,000 messages, all or nothing",
)
def post_batch(body: BatchIn, key: Send, res: Res) -> dict[str, Any]:
    """The ids come back in the order of `messages`; one bad item refuses the whole batch,
    and the 422 names it (`messages[3].phone`)."""
    items = [item.model_dump(exclude_none=True) for item in body.messages]
    try:
        ids = res.producer.enqueue_many(items, kind=body.kind, sender=body.sender)
    except IdempotencyConflict:
        raise
    except ValidationError:
        # name every bad item, not only the first the producer met
        refused = res.producer.refusals(items, kind=body.kind, sender=body.sender)
        raise ApiError(
            422, f"{len(refused)} message(s) refused; nothing was accepted",
            errors=[{"field": e.field, "reason": e.reason} for e in refused],
        ) from None
    return {"ids": ids}


@router.get("/{message_id}", response_model=MessageOut, summary="One message",
            responses=problem_responses(404))
def get_message(
    message_id: Annotated[int, Path(ge=1, le=MAX_ID)], key: Read, res: Res
) -> dict[str, Any]:
    return _one(res, message_id)


@router.get("", response_model=MessagePage, summary="Messages, newest first")
def get_messages(
    key: Read,
    res: Res,
    phone: Annotated[str | None, Query(max_length=MAX_PHONE_LENGTH,
                                       description="in any written form")] = None,
    status: StatusName | None = None,
    kind: KindName | None = None,
    campaign: Annotated[str | None, Query(max_length=64, description="a campaign's name")] = None,
    since: Annotated[When | None, Query(description="created at or after")] = None,
    until: Annotated[When | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    recipient = normalize_phone(phone) if phone is not None else None
    before = read_message_cursor(cursor) if cursor is not None else None
    with res.db.sessions() as session:
        rows = list_messages(
            session, recipient=recipient, status=status, kind=kind, campaign=campaign,
            since=since, until=until,
            before_id=before, limit=limit + 1,
        )
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "items": [message_dict(m) for m in page],
        "next": message_cursor(page[-1].id) if more else None,
    }


def _one(res: Resources, message_id: int) -> dict[str, Any]:
    with res.db.sessions() as session:
        found = message_status(session, message_id)
    if found is None:
        raise ApiError(404, f"no message with id {message_id}")
    return found
