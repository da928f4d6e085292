"""Logging set-up for the worker, beat and command line: one line per event."""

from __future__ import annotations

import logging

from worker.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Send fibosms's records to stderr at the configured level."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.getLogger("fibosms").setLevel(settings.log_level)
    # urllib3 logs request lines, query string (and so the password) included, at DEBUG
    logging.getLogger("urllib3").setLevel(logging.WARNING)
