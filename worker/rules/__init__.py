"""The rules a message must pass before it is recorded: pure functions, no I/O."""

from worker.rules.phone import format_for_gateway, mask_phone, normalize_phone
from worker.rules.text import PreparedText, prepare_text, strip_vietnamese_diacritics

__all__ = [
    "PreparedText",
    "format_for_gateway",
    "mask_phone",
    "normalize_phone",
    "prepare_text",
    "strip_vietnamese_diacritics",
]
