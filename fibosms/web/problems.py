"""Errors as ``application/problem+json`` (RFC 9457): type, title, status, detail, errors.

Every error leaves through here. None carries a stack trace, a setting's value or a phone
number: a 422 names fields and reasons, never the values that were sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from worker.errors import IdempotencyConflict, ValidationError

log = logging.getLogger("fibosms.api")

MEDIA_TYPE = "application/problem+json"
#: problem types are relative URIs naming the problem; documented in docs/http-api.md
TYPE_BASE = "/problems/"

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
SLUGS: dict[int, str] = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 408: "request-timeout", 409: "conflict",
    413: "content-too-large", 415: "unsupported-media-type", 422: "invalid",
    429: "rate-limited", 500: "internal", 503: "unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """One problem document."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + SLUGS.get(status, str(status)),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


class ApiError(Exception):
    """An expected refusal raised by a route or a dependency."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None,
        errors: Sequence[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.errors = errors
        self.extra = extra


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "messages", 3, "phone")`` → ``messages[3].phone``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Field and reason of each error; the input itself is left out."""
    found = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            # its location is a character position, not a field
            where = [p for p in e.get("loc", ()) if isinstance(p, int)]
            at = f" at character {where[0]}" if where else ""
            found.append({"field": "body", "reason": f"not valid JSON{at}"})
            continue
        found.append(
            {"field": field_path(e.get("loc", ())), "reason": str(e.get("msg", "invalid"))}
        )
    return found


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.detail, headers=exc.headers, errors=exc.errors,
                       extra=exc.extra)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "the request is not valid", errors=validation_errors(exc))

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem(
            409,
            f"{exc.field}: {exc.reason}",
            extra={"message_id": exc.message_id},
        )

    @app.exception_handler(ValidationError)
    async def _refused(request: Request, exc: ValidationError) -> JSONResponse:
        return problem(
            422, "the message was refused", errors=[{"field": exc.field, "reason": exc.reason}]
        )

    # anything else is answered by the outermost middleware (fibosms.web.middleware.Observe)
    # with :func:`unexpected`, so that no error reaches the server's own handler


def unexpected(exc: BaseException) -> JSONResponse:
    """A failure nobody planned for: 503 for the database or the broker, else 500; the
    log gets the error's type only (its text may quote values)."""
    if _is_unavailable(exc):
        log.warning("request failed: the ledger or the broker is unavailable (%s)",
                    type(exc).__name__)
        return problem(503, "the ledger or the broker is unavailable; try again",
                       headers={"Retry-After": "5"})
    log.error("request failed: %s", type(exc).__name__)
    return problem(500, "an unexpected error; nothing about it is shown here")


def _is_unavailable(exc: BaseException) -> bool:
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sqlalchemy.exc.TimeoutError | ConnectionError | TimeoutError)
