"""fibosms's worker side: the Celery app, tasks, the FIBO client, the ledger, the sweep.

``celery -A worker …`` finds :data:`app`, built on first access from the settings in the
environment; importing this package connects to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]

_app: Celery | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name in ("app", "celery"):
        if _app is None:
            from worker.app import make_app
            from worker.settings import get_settings

            _app = make_app(get_settings())
        return _app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
