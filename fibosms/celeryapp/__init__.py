"""The Celery wiring: the app, its tasks, per-process resources, signals, the beat lock,
library work-arounds, the Flower guard and Celery's configuration.

``make_app(settings)`` builds an app (connecting to nothing); ``celery -A worker`` uses
``default_app()``, built once per process from the environment. The names below are
resolved on first access, so importing one module of this package (``config``, say)
does not import the app, its tasks and everything they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fibosms.celeryapp.app import default_app, make_app, publisher_for, settings_of

__all__ = ["default_app", "make_app", "publisher_for", "settings_of"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fibosms.celeryapp import app

        return getattr(app, name)
    raise AttributeError(f"module 'fibosms.celeryapp' has no attribute {name!r}")
