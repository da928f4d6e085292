"""``/v1/health`` (no key): the checks of ``fibosms health``; liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from fibosms.web.auth import resources
from fibosms.web.resources import Resources
from fibosms.web.schemas import HealthOut, problem_responses
from worker.health import run_checks

router = APIRouter(prefix="/v1/health", tags=["health"], responses=problem_responses(400, 422))

Res = Annotated[Resources, Depends(resources)]

#: seconds each check may take
CHECK_TIMEOUT_SECONDS = 5.0
#: without ?gateway=true: no call to the gateway, which costs and is rate limited
DEFAULT_CHECKS = ("broker", "database", "polls")
READY_CHECKS = ("broker", "database")


def _answer(res: Resources, names: tuple[str, ...]) -> JSONResponse:
    results = run_checks(res.settings, list(names), timeout=CHECK_TIMEOUT_SECONDS)
    healthy = all(r.ok for r in results)
    body: dict[str, Any] = {"healthy": healthy,
                            "checks": {r.name: r.as_dict() for r in results}}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("", response_model=HealthOut, responses={503: {"model": HealthOut}},
            summary="The checks of `fibosms health`")
def get_health(
    res: Res,
    gateway: Annotated[bool, Query(description="also call the gateway once")] = False,
) -> JSONResponse:
    """200 when every check passes, 503 when one fails."""
    return _answer(res, (*DEFAULT_CHECKS, "gateway") if gateway else DEFAULT_CHECKS)


@router.get("/live", summary="Liveness: the process answers")
def get_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/ready", response_model=HealthOut, responses={503: {"model": HealthOut}},
            summary="Readiness: the ledger (migrated) and the broker answer")
def get_ready(res: Res) -> JSONResponse:
    return _answer(res, READY_CHECKS)
