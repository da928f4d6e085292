"""fibosms's worker side: settings, the FIBO client, the ledger, the send path, the sweep.

``celery -A worker …`` finds :data:`app` here. It is the one place this package reaches up
to the entry points: the attribute is resolved on first access by
``fibosms.celeryapp.app.default_app`` (built from the settings in the environment), so
importing this package, or any module in it, imports no Celery wiring and connects to
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from fibosms.celeryapp.app import default_app  # the single upward import, on demand

        return default_app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
