"""The Celery application, built from a Settings object."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from worker.settings import Settings


def make_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; building it opens no connection."""
    from worker import compat

    compat.install()  # library work-arounds (worker/compat.py), before any connection
    app = Celery("fibosms", set_as_current=False)
    app.conf.update(celeryconfig.build(settings))
    # a plain attribute, not a config key: Celery's config is shown by inspect and Flower
    app.fibosms_settings = settings
    # the tasks module registers on whichever app is current when it is imported
    from worker import tasks

    tasks.register(app)
    # logging, worker metrics and the Flower guard, through Celery's signals
    from worker import hooks

    hooks.install(app, settings)
    return app


def settings_of(app: Celery) -> Settings:
    """The settings ``app`` was built from."""
    settings: Settings = app.fibosms_settings
    return settings
