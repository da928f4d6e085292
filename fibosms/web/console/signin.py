"""``/console/login`` and ``/console/logout``.

The sign-in form is protected by a double-submit token: the page sets a random cookie and
puts the same value in the form; a POST whose field and cookie differ answers 403. After
a few failed attempts for a name or from an address, each further one is slowed down.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fibosms.web.console.guard import (
    PREFIX,
    Refused,
    acting,
    console_state,
    read_form,
    render,
    resources,
)
from fibosms.web.console.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_SECONDS,
    make_cookie,
    same_token,
)
from fibosms.web.resources import Resources
from worker.clock import now as utcnow
from worker.ledger.operators import OperatorRecord, check_password, new_session_key

router = APIRouter(prefix=PREFIX, include_in_schema=False)
log = logging.getLogger("fibosms.console")


def _login_page(request: Request, *, status: int = 200, error: str | None = None,
                name: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    page = render(request, "login.html", status=status, csrf=token, error=error, name=name)
    page.set_cookie(LOGIN_COOKIE, token, max_age=3600, path=PREFIX, httponly=True,
                    samesite="strict", secure=request.url.scheme == "https")
    return page


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request)


def _check(res: Resources, name: str, password: str) -> OperatorRecord | None:
    with res.db.transaction() as session:
        return check_password(session, name, password, now=utcnow())


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    if not same_token(form.one(CSRF_FIELD) or None, request.cookies.get(LOGIN_COOKIE) or "\0"):
        raise Refused(render(request, "error.html", status=403, title="Refused",
                             detail="The sign-in form's token is missing or stale: "
                             "open the sign-in page again."))
    name = form.one("username").strip()[:64]
    password = form.one("password")
    throttle = console_state(request).throttle
    client = request.client.host if request.client else "-"
    keys = (f"name:{name.lower()}", f"ip:{client}")
    delay = throttle.delay(*keys)
    if delay:
        await asyncio.sleep(delay)
    operator = await run_in_threadpool(_check, resources(request), name, password)
    if operator is None:
        throttle.failed(*keys)
        log.warning("console sign-in refused (waited %.1fs)", delay)
        return _login_page(request, status=401, error="Wrong name or password.", name=name)
    throttle.succeeded(keys[0])
    log.info("console sign-in: %s", operator.name)
    answer = RedirectResponse(PREFIX + "/", status_code=303)
    answer.set_cookie(
        COOKIE, make_cookie(operator.id, operator.session_key, now=utcnow().timestamp()),
        max_age=SESSION_SECONDS, path=PREFIX, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )
    answer.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return answer


def _end_sessions(res: Resources, operator_id: int) -> None:
    with res.db.transaction() as session:
        new_session_key(session, operator_id)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Signs the operator out everywhere: their signing key is replaced."""
    who, _form = await acting(request, operator_only=False)
    await run_in_threadpool(_end_sessions, resources(request), who.operator.id)
    answer = RedirectResponse(PREFIX + "/login", status_code=303)
    answer.delete_cookie(COOKIE, path=PREFIX)
    return answer
