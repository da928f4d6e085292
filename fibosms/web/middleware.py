"""Pure ASGI middleware: the body limit and timeout, the access log, request metrics.

The body is read whole before the app sees it (at most :data:`MAX_BODY_BYTES`), within
:data:`BODY_TIMEOUT_SECONDS`: a larger body is refused with 413 as soon as it is known to be
larger, and a client that trickles its body is cut off with 408 instead of holding a
server thread.

The access log has one line per request: method, the route's template (never the raw path
or the query string, which may carry a phone number), status, milliseconds and the key's
name. The metrics count requests and their latency by route template, method and status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fibosms.web.problems import MEDIA_TYPE, SLUGS, TITLES, TYPE_BASE, unexpected

#: bytes
MAX_BODY_BYTES = 1024 * 1024
#: seconds a client may take to send its whole body
BODY_TIMEOUT_SECONDS = 10.0

access_log = logging.getLogger("fibosms.api.access")


async def _send_problem(send: Send, status: int, detail: str) -> None:
    body = json.dumps({
        "type": TYPE_BASE + SLUGS[status], "title": TITLES[status], "status": status,
        "detail": detail,
    }).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 past :data:`MAX_BODY_BYTES`, 408 past :data:`BODY_TIMEOUT_SECONDS`."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES,
                 timeout: float = BODY_TIMEOUT_SECONDS) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await _send_problem(send, 413, too_large)
                    return
        if (scope.get("method") in _WITH_BODY and not _is_console(scope)
                and not _csv_content(scope) and not _json_content(scope)):
            await _send_problem(send, 415, "send the body as JSON: Content-Type: application/json")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout)
        except TimeoutError:
            await _send_problem(send, 408, "the request body took too long to arrive")
            return
        if body is None:
            await _send_problem(send, 413, too_large)
            return
        if body is _DISCONNECTED:
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> Any:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


_DISCONNECTED = object()
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _is_console(scope: Scope) -> bool:
    """The console's pages post HTML forms (urlencoded), not JSON."""
    path = str(scope.get("path", ""))
    return path == "/console" or path.startswith("/console/")


#: the paths that also take a CSV body (``Content-Type: text/csv``)
_CSV_PATHS = frozenset({"/v1/campaigns"})


def _csv_content(scope: Scope) -> bool:
    if scope.get("path") not in _CSV_PATHS:
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"text/csv")
    return False


def _json_content(scope: Scope) -> bool:
    """True for a JSON body, and for one that names no type (taken as JSON, as curl's
    ``--json`` and most HTTP libraries' defaults differ); the header is then set."""
    headers = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    scope["headers"] = [*headers, (b"content-type", b"application/json")]
    return True


class Observe:
    """The access log line and the request metrics of every HTTP request; an error no
    handler took becomes a problem document here (500, or 503 for the ledger or the broker)
    and never reaches the server, which would print its traceback."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "fibosms_api_requests", "HTTP API requests, by route, method and status",
            ["route", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "fibosms_api_request_seconds", "HTTP API request latency, by route and method",
            ["route", "method"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            if status:  # the answer had begun: nothing sensible can follow it
                raise
            await unexpected(exc)(scope, receive, observed)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = str(scope.get("method", ""))
            self.requests.labels(route, method, str(status)).inc()
            self.latency.labels(route, method).observe(elapsed)
            state = scope.get("state") or {}
            access_log.info(
                "%s %s %d %.1fms key=%s", method, route, status, elapsed * 1000,
                state.get("key_name", "-"),
            )


def _route_of(scope: Scope) -> str:
    """The matched route's template (``/v1/messages/{message_id}``), or ``unmatched``.

    The router leaves the route it chose in the scope."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))
