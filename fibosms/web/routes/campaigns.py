"""``/v1/campaigns``: send a campaign (JSON rows or a CSV body), list, show and cancel them.

The checks are those of ``fibosms campaign send``: every row first, and nothing accepted
when one is bad unless ``skip_invalid``. A campaign larger than the 1 MiB body limit goes
through the command line, or in several requests under the same name (a number already
accepted for the campaign is not accepted again).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError as ModelError
from starlette.concurrency import run_in_threadpool

from fibosms.web.auth import require, resources
from fibosms.web.campaign_schemas import (
    MAX_CAMPAIGN_NAME,
    CampaignIn,
    CampaignList,
    CampaignOut,
    CampaignReportOut,
    CancelOut,
)
from fibosms.web.problems import ApiError
from fibosms.web.resources import Resources
from fibosms.web.schemas import MAX_TEXT_LENGTH, When, problem_responses
from producer.validate import MAX_SENDER_LENGTH
from worker.campaigns import (
    CampaignCancelled,
    CampaignError,
    CampaignReport,
    CsvTable,
    cancel,
    list_campaigns,
    read_csv,
    send_table,
    show_campaign,
    table_of,
)
from worker.ledger.apikeys import KeyRecord

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"],
                   responses=problem_responses(400, 401, 403, 422, 429, 503))

Send = Annotated[KeyRecord, Depends(require("send"))]
Read = Annotated[KeyRecord, Depends(require("read"))]
Admin = Annotated[KeyRecord, Depends(require("admin"))]
Res = Annotated[Resources, Depends(resources)]
Name = Annotated[str, Path(min_length=1, max_length=MAX_CAMPAIGN_NAME)]

CSV = "text/csv"
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/CampaignIn"}},
        CSV: {"schema": {"type": "string", "description": "UTF-8 (with or without BOM), "
                         "comma or semicolon; a header with `phone`, and `text` unless the "
                         "`text` parameter is given"}},
    },
}


@router.post(
    "",
    status_code=201,
    response_model=CampaignReportOut,
    responses={200: {"model": CampaignReportOut, "description": "dry_run: what would be done"},
               **problem_responses(409, 413, 415)},
    openapi_extra={"requestBody": _BODY},
    summary="Send a campaign: JSON rows or a CSV file",
)
async def post_campaign(
    request: Request,
    key: Send,
    res: Res,
    name: Annotated[str | None, Query(min_length=1, max_length=MAX_CAMPAIGN_NAME,
                                      description="CSV only: the campaign's name")] = None,
    text: Annotated[str | None, Query(max_length=MAX_TEXT_LENGTH,
                                      description="CSV only: a {column} template")] = None,
    sender: Annotated[str | None, Query(max_length=MAX_SENDER_LENGTH,
                                        description="CSV only")] = None,
    send_at: Annotated[When | None, Query(description="CSV only")] = None,
    dry_run: Annotated[bool, Query(description="CSV only")] = False,
    skip_invalid: Annotated[bool, Query(description="CSV only")] = False,
) -> JSONResponse:
    """Every row is checked first; with a bad row nothing is accepted (422 naming each
    line or row) unless `skip_invalid`. Sending the same campaign again accepts nothing
    new. With JSON the options are in the body; with `text/csv`, in the query."""
    body = await request.body()
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    table: CsvTable
    if media == CSV:
        if name is None:
            raise _invalid("name", "a CSV campaign needs ?name=")
        try:
            table = read_csv(body)
        except CampaignError as exc:
            raise _invalid("body", str(exc)) from None
        options: dict[str, Any] = {"name": name, "template": text, "sender": sender,
                                   "send_at": send_at, "dry_run": dry_run,
                                   "skip_invalid": skip_invalid}
        where = "line {}"
    else:
        given = [p for p in ("name", "text", "sender", "send_at", "dry_run", "skip_invalid")
                 if p in request.query_params]
        if given:
            raise _invalid(given[0], "with a JSON body the options go in the body")
        try:
            document = CampaignIn.model_validate_json(body)
        except ModelError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
            ) from None
        table = table_of(document.rows)
        options = {"name": document.name, "template": document.text,
                   "sender": document.sender, "send_at": document.send_at,
                   "dry_run": document.dry_run, "skip_invalid": document.skip_invalid}
        where = "rows[{}]"
    report = await run_in_threadpool(_send, res, table, options)
    if report.errors and not options["skip_invalid"] and not options["dry_run"]:
        raise ApiError(
            422, f"{len(report.errors)} bad row(s); nothing was accepted (fix them, or "
            "skip_invalid)",
            errors=[{"field": where.format(e.line), "reason": e.reason} for e in report.errors],
            extra={"report": report.as_dict()},
        )
    return JSONResponse(report.as_dict(), status_code=200 if options["dry_run"] else 201)


def _send(res: Resources, table: CsvTable, options: dict[str, Any]) -> CampaignReport:
    try:
        return send_table(table, settings=res.settings, db=res.db, publisher=res.publisher,
                          **options)
    except CampaignCancelled as exc:
        raise ApiError(409, str(exc)) from None
    except CampaignError as exc:
        raise _invalid("body", str(exc)) from None


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(422, "the request is not valid", errors=[{"field": field, "reason": reason}])


@router.get("", response_model=CampaignList, summary="Every campaign, newest first")
def get_campaigns(key: Read, res: Res) -> dict[str, Any]:
    return {"items": list_campaigns(res.db)}


@router.get("/{name}", response_model=CampaignOut, responses=problem_responses(404),
            summary="One campaign: counts by status and hold, rate, estimated end")
def get_campaign(name: Name, key: Read, res: Res) -> dict[str, Any]:
    found = show_campaign(res.db, name)
    if found is None:
        raise ApiError(404, "no campaign with that name")
    return found


@router.post("/{name}/cancel", response_model=CancelOut,
             responses=problem_responses(404, 413, 415),
             summary="Cancel a campaign: what is not yet sent becomes cancelled")
def post_cancel(name: Name, key: Admin, res: Res) -> dict[str, Any]:
    """Messages in flight are left to their attempt."""
    try:
        cancelled = cancel(res.db, name)
    except CampaignError:
        raise ApiError(404, "no campaign with that name") from None
    return {"campaign": name, "cancelled": cancelled}
