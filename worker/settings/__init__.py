"""One frozen settings object, read once from the ``FIBOSMS_*`` environment.

Nothing deep in the code reads ``os.environ``: entry points call :func:`get_settings`
(or :meth:`Settings.from_env` with an explicit mapping, as the tests do) and pass the
object down. A bad value stops start-up with a one-line :class:`SettingsError` naming the
variable.

Each variable is declared once, in :mod:`worker.settings.model`, with its type, default,
bounds and help text; :mod:`worker.settings.declared` reads the declaration back,
:mod:`worker.settings.load` reads and validates the values, :mod:`worker.settings.rules`
checks the rules that span several settings, and ``python -m worker.settings --markdown``
prints the README's table from the declaration.
"""

from __future__ import annotations

from worker.settings import load, model
from worker.settings.declared import env_names
from worker.settings.errors import SettingsError
from worker.settings.model import (
    BALANCE_PATH,
    DEMO_CLIENT_NO,
    DEMO_CLIENT_PASS,
    FIBO_API_URL,
    KINDS,
    METRICS_PORT,
    SANDBOX_HOST,
    SANDBOX_PORT,
    SEND_PATH,
    TOTALS_PATH,
    LogFormat,
    PhoneFormat,
    Settings,
    redact_url,
)

model.install_reader(load.read_env)

__all__ = [
    "BALANCE_PATH",
    "DEMO_CLIENT_NO",
    "DEMO_CLIENT_PASS",
    "FIBO_API_URL",
    "KINDS",
    "METRICS_PORT",
    "SANDBOX_HOST",
    "SANDBOX_PORT",
    "SEND_PATH",
    "TOTALS_PATH",
    "LogFormat",
    "PhoneFormat",
    "Settings",
    "SettingsError",
    "env_names",
    "get_settings",
    "redact_url",
]


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached
