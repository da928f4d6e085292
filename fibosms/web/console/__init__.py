"""The operator console: server-rendered pages under ``/console/`` of the API's server.

:func:`install` adds its routes, its static files, its security headers and the handler
of its refusals to the API's app. Reads go through the ledger's named functions; the
actions (operators only) are replaying dead letters, resuming a paused account, cancelling
a campaign and editing the suppression list. See
``docs/console.md``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fibosms.web.console.guard import PREFIX, Refused, SecurityHeaders
from fibosms.web.console.marketing import router as marketing
from fibosms.web.console.pages import router as pages
from fibosms.web.console.signin import router as signin

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount the console on ``app`` (nothing is read or connected here)."""
    # the static files first: the pages' router ends with a catch-all
    app.mount(PREFIX + "/static",
              StaticFiles(packages=[("fibosms.web.console", "static")]), name="console-static")
    app.include_router(signin)
    app.include_router(marketing)  # before the pages' catch-all
    app.include_router(pages)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return exc.response

    app.add_exception_handler(Refused, refused)

    @app.get(PREFIX, include_in_schema=False)
    def bare() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=308)

    app.add_middleware(SecurityHeaders)
