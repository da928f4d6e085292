"""The ASGI application: ``create_app()`` builds it; its lifespan makes the resources.

Building the app reads nothing and connects to nothing, so ``/openapi.json`` can be had
without a database; the settings are read (when not given) and the resources made when
the server starts it, in each worker process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fibosms.web import console, problems
from fibosms.web.campaign_schemas import CampaignIn
from fibosms.web.middleware import BodyLimit, Observe
from fibosms.web.resources import open_resources
from fibosms.web.routes import account, campaigns, failures, health, messages, suppressions
from fibosms.web.schemas import Problem
from worker.settings import Settings

DESCRIPTION = """\
Hand SMS over to fibosms from any language, with the guarantees of `enqueue_sms`: a message
is recorded before it is acknowledged, never twice for the same `Idempotency-Key`, and bad
input is refused with the field and the reason, nothing written.

Authenticate with `Authorization: Bearer TOKEN` (`fibosms keys create NAME --scope …`).
Errors are `application/problem+json` (RFC 9457).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API. ``settings`` default to the environment's, read when a server starts it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings is not None:
            made = open_resources(settings)
        else:
            # a server process (`fibosms serve`): the environment's settings and logging
            from worker.logs import configure_logging
            from worker.settings import get_settings

            configure_logging(get_settings())
            made = open_resources(get_settings())
        app.state.resources = made
        try:
            yield
        finally:
            made.close()

    # the interactive docs at /docs, their script and styles served from this package's
    # dependencies rather than a CDN (operators' networks often have no way out)
    app = FastAPIOffline(
        title="fibosms",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        static_url="/docs/static",
    )
    problems.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    for router in (messages.router, failures.router, account.router, health.router,
                   campaigns.router, suppressions.router):
        app.include_router(router)

    console.install(app)  # the operator console under /console/ (its own headers)

    registry = CollectorRegistry()

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(_exposed(registry)), media_type=CONTENT_TYPE_LATEST)

    # outermost last: Observe sees every answer, the body limit's included
    app.add_middleware(BodyLimit)
    app.add_middleware(Observe, registry=registry)
    return app


def _exposed(registry: CollectorRegistry) -> CollectorRegistry:
    """This process's metrics, or, under ``fibosms serve --workers N`` with
    ``PROMETHEUS_MULTIPROC_DIR`` set (Prometheus' own variable), every server process's,
    added up from their files: a scrape reaches one process of several."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return registry
    from prometheus_client import multiprocess

    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=path)  # type: ignore[no-untyped-call]
    return combined


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the problem schema every error response refers to."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi
        from pydantic.json_schema import models_json_schema

        document = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
        _, defs = models_json_schema([(Problem, "serialization"), (CampaignIn, "validation")],
                                     ref_template="#/components/schemas/{model}")
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            defs["$defs"]
        )
        app.openapi_schema = document
    return app.openapi_schema
