"""Celery's configuration for fibosms, at the top level where Celery users look for it.

The configuration is built from the settings, not read from this module's attributes:
``build(settings)`` returns the dict an app is configured with, ``beat_schedule(settings)``
the periodic tasks, ``send_time_limits(settings)`` the send tasks' limits. All three live in
:mod:`fibosms.celeryapp.config` and are resolved on first access, so importing this module
imports no Celery wiring. Broker names and timings are in :mod:`worker.brokers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fibosms.celeryapp.config import beat_schedule, build, send_time_limits

__all__ = ["beat_schedule", "build", "send_time_limits"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fibosms.celeryapp import config

        return getattr(config, name)
    raise AttributeError(f"module 'celeryconfig' has no attribute {name!r}")
