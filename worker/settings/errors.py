"""The one error settings raise."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line and names the variable."""
