"""Keeping the password out of logs.

FIBO takes the password in the query string (``clientPass=…``), so every URL the HTTP
stack sees carries it. Our own code never logs a URL; urllib3 does, and this module is
where it is told not to.
"""

from __future__ import annotations

import logging
import re

#: urllib3 loggers that put a request URL (with its query string) into a record: the
#: per-request DEBUG line, "Incremented Retry for (url=…)", "Failed to parse headers (url=…)"
URLLIB3_URL_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "urllib3.poolmanager",
)

_SECRET_PARAM = re.compile(r"(?i)(clientPass=)[^&\s'\"]*")
_SECRET_ELEMENT = re.compile(r"(?is)(<Password>).*?(</Password>)")


def scrub(text: str, *secrets: str) -> str:
    """``text`` with every ``clientPass=`` value, ``<Password>`` element and given secret masked."""
    text = _SECRET_PARAM.sub(r"\1***", text)
    text = _SECRET_ELEMENT.sub(r"\1***\2", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RewriteFilter(logging.Filter):
    """Rewrites a record's formatted message with :meth:`rewrite` before a handler sees it."""

    def rewrite(self, text: str) -> str:
        return scrub(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break logging
            return True
        cleaned = self.rewrite(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ScrubFilter(RewriteFilter):
    """Masks the password in urllib3's records (:func:`scrub`)."""


_FILTER = ScrubFilter()


def quiet_urllib3() -> None:
    """Stop urllib3 from logging request URLs (and so the password) — idempotent.

    Its per-request DEBUG line is ``GET /SendMT/…?clientNo=…&clientPass=… 200``, so
    those loggers are raised to WARNING. An application that lowers them again still
    gets the password masked by :class:`ScrubFilter`, which also covers the one WARNING
    that carries a URL (a response whose headers do not parse).
    """
    for name in URLLIB3_URL_LOGGERS:
        logger = logging.getLogger(name)
        if name in ("urllib3.connectionpool", "urllib3.util.retry"):
            logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
