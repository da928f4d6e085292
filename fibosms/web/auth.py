"""Bearer API keys with scopes, and the per-key request limit.

``Authorization: Bearer TOKEN``: 401 without a token, or with one that is malformed,
unknown, wrong or revoked; 403 when the key lacks the route's scope; 429 with
``Retry-After`` past ``FIBOSMS_API_RATE_LIMIT``. The token never reaches a log line: the
access log names the key.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fibosms.web.problems import ApiError
from fibosms.web.resources import Resources
from worker.ledger.apikeys import KeyRecord
from worker.requestlimit import RedisRequestLimiter

#: longest token accepted before any lookup
MAX_TOKEN_LENGTH = 200

_bearer = HTTPBearer(auto_error=False, description="an API key: `fibosms keys create NAME`")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fibosms"'}


async def resources(request: Request) -> Resources:
    res: Resources = request.app.state.resources
    return res


async def _authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    res: Resources,
) -> KeyRecord:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "an API key is required: Authorization: Bearer TOKEN",
                       headers=_CHALLENGE)
    token = credentials.credentials
    key = None
    if 0 < len(token) <= MAX_TOKEN_LENGTH and token.isascii():
        fresh, key = res.keys.cached(token)
        if not fresh:  # the ledger is asked in a thread: the event loop never waits on it
            key = await run_in_threadpool(res.keys.lookup, token)
    if key is None:
        raise ApiError(401, "the API key is not valid (unknown, wrong or revoked)",
                       headers=_CHALLENGE)
    request.state.key_name = key.name
    return key


def require(scope: str) -> Callable[..., Awaitable[KeyRecord]]:
    """A dependency: the caller's key, which must hold ``scope``; counts the request.

    It runs on the event loop (no thread hop) unless it must ask the ledger or Redis."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        res: Resources = Depends(resources),  # noqa: B008
    ) -> KeyRecord:
        key = await _authenticate(request, credentials, res)
        if isinstance(res.limiter, RedisRequestLimiter):
            wait = await run_in_threadpool(res.limiter.try_take, str(key.id))
        else:
            wait = res.limiter.try_take(str(key.id))
        if wait > 0:
            raise ApiError(
                429,
                f"more than {res.settings.api_rate_limit:g} requests per second for this key",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if scope not in key.scopes:
            raise ApiError(403, f"this API key lacks the scope {scope!r}")
        return key

    dependency.__name__ = f"require_{scope}"
    return dependency
