"""The Celery wiring: the app, its tasks, per-process resources, signals, the beat lock,
library work-arounds, the Flower guard and Celery's configuration.

``make_app(settings)`` builds an app (connecting to nothing); ``celery -A worker`` uses
``default_app()``, built once per process from the environment.
"""

from __future__ import annotations

from fibosms.celeryapp.app import default_app, make_app, publisher_for, settings_of

__all__ = ["default_app", "make_app", "publisher_for", "settings_of"]
