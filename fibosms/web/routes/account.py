"""``/v1/account``: the balance, today's reconciliation, the pause; resuming."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from fibosms.web.auth import require, resources
from fibosms.web.resources import Resources
from fibosms.web.schemas import AccountOut, ResumeOut, problem_responses
from worker.clock import now
from worker.ledger.apikeys import KeyRecord
from worker.watch.control import resume_sending
from worker.watch.days import vietnam_day
from worker.watch.report import day_report

router = APIRouter(prefix="/v1/account", tags=["account"],
                   responses=problem_responses(400, 401, 403, 429, 503))

Read = Annotated[KeyRecord, Depends(require("read"))]
Admin = Annotated[KeyRecord, Depends(require("admin"))]
Res = Annotated[Resources, Depends(resources)]


@router.get("", response_model=AccountOut, summary="Balance, today's reconciliation, pause")
def get_account(key: Read, res: Res) -> dict[str, Any]:
    """As `fibosms report` shows the current Vietnam-local day."""
    with res.db.sessions() as session:
        report = day_report(session, vietnam_day(now()),
                            tolerance=res.settings.reconcile_tolerance)
    account = report.pop("account")
    balance, polled = report.pop("balance"), report.pop("balance_polled_at")
    return {
        "balance": balance,
        "balance_polled_at": polled,
        "paused": account["paused"],
        "pause_code": account["code"],
        "pause_reason": account["reason"],
        "paused_since": account["since"],
        "resumes": account["resumes"],
        "today": report,
    }


@router.post("/resume", response_model=ResumeOut, summary="Resume sending after a pause",
             responses=problem_responses(413, 415))
def post_resume(key: Admin, res: Res) -> dict[str, Any]:
    """After an account-wide failure was fixed; publishes what waited."""
    was_paused, published = resume_sending(
        settings=res.settings, db=res.db, publisher=res.publisher,
        by=f"api:{key.name}"[:64],
    )
    return {"resumed": was_paused, "published": published}
