"""Who is asking: the session behind a console request, its CSRF token and role; the
pages' security headers; rendering.

Without a session, a page asked for by a browser (``Accept: text/html``) redirects to the
sign-in page, anything else answers 401. A POST without the session's CSRF token answers
403, and so does an action asked for by a viewer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fibosms.web.console.charts import local
from fibosms.web.console.session import (
    COOKIE,
    CSRF_FIELD,
    SignInThrottle,
    csrf_token,
    read_cookie,
    same_token,
)
from fibosms.web.resources import Resources
from worker.clock import now as utcnow
from worker.ledger.operators import OperatorRecord, operator_by_id
from worker.rules.phone import mask_phone

PREFIX = "/console"
#: every console answer carries these
HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
#: bytes of a form body the console reads
MAX_FORM_BYTES = 64 * 1024

templates = Environment(
    loader=PackageLoader("fibosms.web.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["masked"] = mask_phone
templates.filters["local"] = lambda d: "" if d is None else f"{local(d):%Y-%m-%d %H:%M:%S}"
templates.filters["num"] = lambda n: "–" if n is None else f"{n:,}"


class SecurityHeaders:
    """Adds :data:`HEADERS` (and ``Cache-Control: no-store`` on pages) to every answer
    under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(PREFIX + "/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                for name, value in HEADERS.items():
                    headers.append((name.lower().encode(), value.encode()))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class ConsoleState:
    """What the console keeps per server process, made on its first request."""

    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    breaker_client: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_state_lock = threading.Lock()


def console_state(request: Request) -> ConsoleState:
    state = getattr(request.app.state, "console", None)
    if state is None:
        with _state_lock:
            state = getattr(request.app.state, "console", None)
            if state is None:
                state = ConsoleState()
                request.app.state.console = state
    return state


def resources(request: Request) -> Resources:
    res: Resources = request.app.state.resources
    return res


class Refused(Exception):
    """Ends a console request with ``response`` (sign in first, forbidden, …)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@dataclass(frozen=True)
class Signed:
    """A signed-in operator and the CSRF token of their session."""

    operator: OperatorRecord
    csrf: str


def _lookup(res: Resources, operator_id: int) -> OperatorRecord | None:
    with res.db.sessions() as session:
        return operator_by_id(session, operator_id)


async def signed_in(request: Request) -> Signed:
    """The request's operator, or :class:`Refused` (redirect to sign in, or 401)."""
    claim = read_cookie(request.cookies.get(COOKIE))
    operator = None
    if claim is not None:
        operator = await run_in_threadpool(_lookup, resources(request), claim.operator_id)
    if operator is None or claim is None or not claim.valid_for(operator.session_key,
                                                               now=utcnow().timestamp()):
        if wants_html(request) and request.method == "GET":
            raise Refused(RedirectResponse(PREFIX + "/login", status_code=303))
        raise Refused(PlainTextResponse("sign in first: /console/login", status_code=401))
    request.scope.setdefault("state", {})["key_name"] = f"console:{operator.name}"
    return Signed(operator, csrf_token(operator.session_key, claim))


class Form(dict[str, list[str]]):
    """A urlencoded form: every value of each field."""

    def one(self, name: str, default: str = "") -> str:
        values = self.get(name)
        return values[0] if values else default


async def read_form(request: Request) -> Form:
    """The urlencoded form of a POST; empty when it is not one."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return Form()
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused(PlainTextResponse("the form is too large", status_code=413))
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2000,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return Form()
    return Form(parsed)


async def acting(request: Request, *, operator_only: bool = True) -> tuple[Signed, Form]:
    """A POST's operator and form: signed in, carrying the session's CSRF token, and (for an
    action) with the operator role; :class:`Refused` otherwise."""
    who = await signed_in(request)
    form = await read_form(request)
    if not same_token(form.one(CSRF_FIELD) or None, who.csrf):
        raise Refused(render(request, "error.html", status=403, who=who,
                             title="Refused", detail="The form's CSRF token is missing or wrong: "
                             "reload the page and try again."))
    if operator_only and not who.operator.may_act:
        raise Refused(render(request, "error.html", status=403, who=who, title="Refused",
                             detail="Viewers can read every page but cannot act."))
    return who, form


def render(request: Request, template: str, *, status: int = 200,
           who: Signed | None = None, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(
        who=who, prefix=PREFIX, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status)
