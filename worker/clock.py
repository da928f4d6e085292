"""The one clock: every "now" in the pipeline comes from :func:`now`.

Tests that need another time pass ``now=`` to the function under test; nothing patches
this module.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
