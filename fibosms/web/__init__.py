"""The HTTP API (``fibosms serve``): an entry point over the producer and the ledger's views.

Layout: :mod:`~fibosms.web.app` (the factory), ``routes/`` (one module per resource),
:mod:`~fibosms.web.auth` (keys, scopes, the rate limit), :mod:`~fibosms.web.problems`
(errors), :mod:`~fibosms.web.middleware` (body limit, access log, metrics),
:mod:`~fibosms.web.serve` (uvicorn). Design choices: ``docs/http-api.md``.
"""

from fibosms.web.app import create_app

__all__ = ["create_app"]
