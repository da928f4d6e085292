"""The Celery application, built from a Settings object.

Building an app opens no connection: it applies the library work-arounds and the
configuration, registers the tasks and connects the signals. ``celery -A worker`` finds
the app :func:`default_app` builds from the environment (``worker.app``, resolved lazily).
"""

from __future__ import annotations

from celery import Celery

from fibosms.celeryapp import compat, resources, signals, tasks
from fibosms.celeryapp.config import build
from fibosms.celeryapp.resources import publisher_for, settings_of
from worker.settings import Settings, get_settings

__all__ = ["default_app", "make_app", "publisher_for", "settings_of"]


def make_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; building it opens no connection."""
    compat.install()  # library work-arounds, before any connection
    app = Celery("fibosms", set_as_current=False)
    app.conf.update(build(settings))
    # a plain attribute, not a config key: Celery's config is shown by inspect and Flower
    app.fibosms_settings = settings
    tasks.register(app)
    # logging, worker metrics, per-process resources and the Flower guard
    signals.install(app)
    return app


def default_app() -> Celery:
    """The app built from the environment's settings, once per process."""
    return resources.default_app(lambda: make_app(get_settings()))
