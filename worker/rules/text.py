"""Message text: what is sent, under which ``serviceType``, and how many SMS it costs.

"Plain" (``serviceType=0``) means the ASCII characters of the GSM 03.38 default alphabet and
its extension table: FIBO documents serviceType 0 as "text without diacritics", and does not
say that it carries GSM's accented letters (è, é, à …) intact, so those go as Unicode.
Extension characters (``^{}\\[~]|``) travel as an escape plus a character, so they cost two
septets. Anything else needs Unicode (``serviceType=1``, UCS-2: 70 characters), which costs
more; Vietnamese with diacritics almost always does, and :func:`strip_vietnamese_diacritics`
turns it into plain text when the caller accepts that.

Text is NFC-normalized before anything is counted, so decomposed Vietnamese (a base letter
and combining marks, as some keyboards and macOS file names produce) counts as it displays.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, NoReturn

from worker.errors import ValidationError

FIELD: Final = "text"

ServiceType = Literal[0, 1]
#: FIBO's serviceType for plain text (GSM 7-bit)
PLAIN: Final[ServiceType] = 0
#: FIBO's serviceType for Unicode text (UCS-2)
UNICODE: Final[ServiceType] = 1

#: GSM 03.38 default alphabet, in table order (3GPP TS 23.038, 6.2.1), without 0x1B (the
#: escape to the extension table). 0x09 is "Ç" as the standard says, although many phones
#: show it as "ç". Only its ASCII characters count as plain here (see the module docstring).
GSM_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: each costs 2 septets (escape + character). The form feed
#: (0x1B 0x0A) is left out: control characters other than CR and LF are refused.
GSM_EXTENSION: Final = "^{}\\[~]|€"

#: septets per character of the plain set: the ASCII part of the GSM alphabet (see the
#: module's docstring for why not all of it)
_SEPTETS: Final[Mapping[str, int]] = MappingProxyType(
    {
        **dict.fromkeys((c for c in GSM_BASIC if c.isascii()), 1),
        **dict.fromkeys((c for c in GSM_EXTENSION if c.isascii()), 2),
    }
)

#: units (septets / UTF-16 code units) in one SMS, and in each part of a concatenated one:
#: the user-data header of a concatenated message takes 7 septets / 3 UCS-2 characters
PLAIN_SINGLE: Final = 160
PLAIN_PART: Final = 153
UNICODE_SINGLE: Final = 70
UNICODE_PART: Final = 67

#: the only control characters a message may hold: line breaks
ALLOWED_CONTROLS: Final = frozenset("\n\r")

_CONTROL_NAMES: Final[Mapping[str, str]] = MappingProxyType({
    "\x00": "NUL", "\t": "tab", "\x0b": "vertical tab", "\x0c": "form feed",
    "\x1b": "escape", "\x7f": "DEL",
})

#: Vietnamese vowels with diacritics (breve, circumflex, horn and the five tones), and đ,
#: by the letter they lose them to. Upper case is derived below.
_VIETNAMESE_LOWER: Final[Mapping[str, str]] = MappingProxyType({
    "a": "àáảãạăằắẳẵặâầấẩẫậ",
    "e": "èéẻẽẹêềếểễệ",
    "i": "ìíỉĩị",
    "o": "òóỏõọôồốổỗộơờớởỡợ",
    "u": "ùúủũụưừứửữự",
    "y": "ỳýỷỹỵ",
    "d": "đ",
})

#: precomposed Vietnamese letter → its letter without diacritics, both cases
STRIP_TABLE: Final[Mapping[str, str]] = MappingProxyType({
    **{ch: base for base, letters in _VIETNAMESE_LOWER.items() for ch in letters},
    **{ch.upper(): base.upper() for base, letters in _VIETNAMESE_LOWER.items()
       for ch in letters},
})


@dataclass(frozen=True)
class PreparedText:
    """A message text ready to send.

    ``length`` is in the units its segments are counted in: GSM septets for plain text
    (extension characters count 2), UTF-16 code units for Unicode (emoji count 2).
    """

    text: str
    service_type: ServiceType
    segments: int
    length: int


def prepare_text(
    text: str,
    *,
    unicode: bool | None = None,
    strip_diacritics: bool = False,
    max_segments: int = 6,
) -> PreparedText:
    """Check ``text``, choose its serviceType and count what it costs.

    ``unicode=None`` chooses: plain when the text fits the GSM alphabet, else Unicode.
    ``unicode=True`` always sends Unicode; ``unicode=False`` refuses text that needs it.
    ``strip_diacritics`` removes Vietnamese diacritics first, so Vietnamese goes plain.

    Raises :class:`ValidationError` (field ``"text"``) for non-text, empty or blank text,
    control characters other than CR/LF, text that ``unicode=False`` cannot carry, and text
    longer than ``max_segments`` SMS. Positions in reasons count characters from 1: in the
    input as given for control characters, after NFC normalization otherwise.
    """
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValidationError("max_segments", "must be a whole number of at least 1")
    if not isinstance(text, str):
        _reject(f"must be a string, not {type(text).__name__}")
    if not text:
        _reject("empty")
    _check_characters(text)
    prepared = unicodedata.normalize("NFC", text)
    if not prepared.strip():
        _reject("only whitespace")
    if strip_diacritics:
        prepared = unicodedata.normalize("NFC", strip_vietnamese_diacritics(prepared))

    outside = _first_outside_gsm(prepared)
    service_type: ServiceType
    if unicode is True:
        service_type = UNICODE
    elif outside is None:
        service_type = PLAIN
    elif unicode is False:
        _reject(_needs_unicode_reason(prepared, outside, stripped=strip_diacritics))
    else:
        service_type = UNICODE

    length, segments = count_segments(prepared, service_type)
    if segments > max_segments:
        reason = (
            f"too long: it would take {segments} SMS segments "
            f"({length} {_units(service_type)}), the limit is {max_segments}"
        )
        if service_type == UNICODE and unicode is None and not strip_diacritics:
            stripped = unicodedata.normalize("NFC", strip_vietnamese_diacritics(prepared))
            if _first_outside_gsm(stripped) is None:
                plain_segments = count_segments(stripped, PLAIN)[1]
                reason += f"; with strip_diacritics=True it would take {plain_segments}"
        _reject(reason)
    return PreparedText(prepared, service_type, segments, length)


def count_segments(text: str, service_type: ServiceType) -> tuple[int, int]:
    """``(length, segments)`` of ``text`` sent as ``service_type``.

    Length in septets (plain) or UTF-16 code units (Unicode). Concatenated parts are filled
    the way SMS centres do: an escape pair or a surrogate pair is never split across two
    parts, so a part may carry one unit less than its size. Raises :class:`ValidationError`
    for plain text outside the GSM alphabet.
    """
    if service_type == PLAIN:
        outside = _first_outside_gsm(text)
        if outside is not None:
            _reject(f"{_show(text[outside])} at position {outside + 1} cannot be sent as plain "
                    "text: it is not in the GSM 7-bit alphabet")
        units = [_SEPTETS[ch] for ch in text]
        single, part = PLAIN_SINGLE, PLAIN_PART
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, part = UNICODE_SINGLE, UNICODE_PART
    length = sum(units)
    if length <= single:
        return length, 1
    segments, used = 1, 0
    for cost in units:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return length, segments


def strip_vietnamese_diacritics(text: str) -> str:
    """``text`` with the diacritics of Vietnamese letters removed (``Đường`` → ``Duong``).

    Precomposed and decomposed input alike; a letter is stripped only when it is a
    Vietnamese letter with its diacritics, so ``ñ``, ``ü``, ``ç`` and everything else stay.
    """
    if not isinstance(text, str):
        _reject(f"must be a string, not {type(text).__name__}")
    out: list[str] = []
    for cluster in _clusters(text):
        if len(cluster) == 1:
            out.append(STRIP_TABLE.get(cluster, cluster))
            continue
        # a base letter with combining marks: compose it to see which letter it is
        composed = unicodedata.normalize("NFC", cluster)
        base = STRIP_TABLE.get(composed[0])
        if base is not None:
            out.append(base + composed[1:])  # marks Vietnamese does not use are kept
        else:
            out.append(cluster)
    return "".join(out)


def _clusters(text: str) -> Iterable[str]:
    """``text`` cut into a character and the combining marks that follow it."""
    start = 0
    for index in range(1, len(text) + 1):
        if index == len(text) or not unicodedata.combining(text[index]):
            yield text[start:index]
            start = index


def _check_characters(text: str) -> None:
    for index, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category == "Cc" and ch not in ALLOWED_CONTROLS:
            name = _CONTROL_NAMES.get(ch)
            label = f"U+{ord(ch):04X}" + (f" ({name})" if name else "")
            _reject(f"control character {label} at position {index + 1}; only line breaks "
                    "(CR, LF) are allowed")
        if category == "Cs":
            _reject(f"lone surrogate U+{ord(ch):04X} at position {index + 1} is not valid "
                    "Unicode")


def _first_outside_gsm(text: str) -> int | None:
    for index, ch in enumerate(text):
        if ch not in _SEPTETS:
            return index
    return None


def _needs_unicode_reason(text: str, index: int, *, stripped: bool) -> str:
    head = (
        f"needs Unicode (serviceType 1) but unicode=False: {_show(text[index])} at position "
        f"{index + 1} is not in the GSM 7-bit alphabet"
    )
    if stripped:
        return head + ", even without Vietnamese diacritics"
    without = unicodedata.normalize("NFC", strip_vietnamese_diacritics(text))
    left = _first_outside_gsm(without)
    if left is None:
        return head + "; pass strip_diacritics=True to send it without Vietnamese diacritics"
    return (
        head + f"; strip_diacritics=True would not be enough ({_show(without[left])} at "
        f"position {left + 1} would remain)"
    )


def _show(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    if unicodedata.category(ch)[0] in "LNPS":
        return f"'{ch}' ({code})"
    return code


def _units(service_type: ServiceType) -> str:
    return "GSM septets" if service_type == PLAIN else "UTF-16 units"


def _reject(reason: str) -> NoReturn:
    raise ValidationError(FIELD, reason)
