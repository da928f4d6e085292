"""Vietnamese mobile numbers: one canonical form, refused at the door when they cannot work.

The canonical form is national, 10 digits starting with 0 (``0912345678``). Everything a
customer database holds (``+84 912 345 678``, ``0084912345678``, ``(+84) 912345678``, the
pre-2018 11-digit ``0162…``) becomes that form, so the gateway's code 10 (wrong format) and
code 31 (11-digit number moved to 10 digits) are caught here, before anything costs money.

Which numbers are mobile numbers in service is libphonenumber's answer (the ``phonenumbers``
package), not a table of ours: its metadata follows the numbering plan and is refreshed by
upgrading the package. Ours is only what it does not do: reading the written forms, the 2018
move from 11 to 10 digits, the forms sent to FIBO, and the named exceptions in
:data:`REFUSED_MOBILE_PREFIXES`. ``docs/phone-numbers.md`` has the whole story.

No reason built here contains the number: reasons end up in logs and the failure table
(see ``mask_phone`` for what may be shown).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NoReturn

from worker.errors import ValidationError
from worker.settings import PhoneFormat

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber, PhoneNumberDesc

FIELD: Final = "phone"

#: The 2018 move from 11 to 10 digits (the MIC's plan; table in docs/phone-numbers.md): old
#: 4-digit prefix → new 3-digit prefix; the 7 subscriber digits stay. libphonenumber refuses
#: the old numbers; the converted one is then checked like any other.
OLD_TO_NEW_PREFIX: Final[Mapping[str, str]] = MappingProxyType({
    # Viettel
    "0162": "032", "0163": "033", "0164": "034", "0165": "035",
    "0166": "036", "0167": "037", "0168": "038", "0169": "039",
    # MobiFone
    "0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078",
    # Vinaphone
    "0123": "083", "0124": "084", "0125": "085", "0127": "081", "0129": "082",
    # Vietnamobile
    "0186": "056", "0188": "058",
    # Gmobile
    "0199": "059",
})

#: Where we refuse what libphonenumber lists as a mobile range (prefix → why, shown in the
#: refusal). Each one is tested against libphonenumber, so an upgrade that drops the range
#: there tells us to drop it here.
REFUSED_MOBILE_PREFIXES: Final[Mapping[str, str]] = MappingProxyType({
    # libphonenumber covers 090-098 as one block; its carrier data once named S-Fone for 095
    # and names nobody since the network closed. A message there is paid for, goes nowhere.
    "095": "S-Fone's former range, no network serves it",
})

#: Vietnam's country code
COUNTRY_CODE: Final = "84"

#: digits in the canonical national form (0 + 9)
NATIONAL_LENGTH: Final = 10

#: anything longer is not a phone number whatever it holds; keeps reasons and work bounded
MAX_RAW_LENGTH: Final = 64  # characters

#: what people and spreadsheets put between digit groups: spaces (also the no-break ones
#: that office software pastes), dots and hyphens (also the Unicode hyphen and en dash)
_SEPARATORS: Final = frozenset(" \u00a0\u202f.-\u2010\u2011\u2013")

#: trimmed from both ends before anything is checked: a line read from a CSV file ends in
#: a newline; inside the number the same characters are refused
_SURROUNDING_WHITESPACE: Final = " \t\r\n\u00a0"

#: ITU country codes are prefix-free: zones 1 and 7 are one digit, these are two, the rest
#: three. Used only to name the country code of a refused foreign number.
_TWO_DIGIT_COUNTRY_CODES: Final = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
})

#: Hanoi and Ho Chi Minh City have 3-digit area codes; every other province 4 (``0236``)
_THREE_DIGIT_AREA_CODES: Final = frozenset({"024", "028"})

_NOT_MOBILE: Final = "not a Vietnamese mobile number"


def normalize_phone(raw: str) -> str:
    """The canonical national form (``0912345678``) of a Vietnamese mobile number.

    Raises :class:`ValidationError` (field ``"phone"``) for anything that is not one:
    landlines, foreign numbers, wrong lengths, unassigned prefixes, stray characters.
    """
    digits, international = _digits(raw)
    if international is None:
        if digits.startswith("00"):
            international = digits[2:]
        elif digits.startswith("0"):
            return _national(digits[1:])
        elif digits.startswith(COUNTRY_CODE):
            international = digits
        else:
            _reject(
                "no leading 0, 84 or +84, so not a Vietnamese number as written "
                "(did a spreadsheet drop the leading 0?)"
            )
    if not international:
        _reject("no country code after the international prefix")
    if international.startswith("0"):
        _reject("an international prefix must be followed by a country code, not 0")
    if not international.startswith(COUNTRY_CODE):
        _reject(f"{_NOT_MOBILE}: foreign number (country code +{_country_code(international)})")
    significant = international[len(COUNTRY_CODE):]
    if significant.startswith("0"):
        # "+84 (0) 912 345 678": the national trunk 0 written after the country code
        significant = significant[1:]
        if significant.startswith("0"):
            _reject("more than one 0 after the country code 84")
    return _national(significant)


def format_for_gateway(national: str, fmt: PhoneFormat) -> str:
    """``0912345678`` (``"national"``) or ``84912345678`` (``"international"``).

    Never with a ``+``: in a query string it arrives as a space. ``national`` is checked
    (normalized) again, so a caller cannot hand the gateway something unchecked.
    """
    number = normalize_phone(national)
    if fmt == "national":
        return number
    if fmt == "international":
        return COUNTRY_CODE + number[1:]
    raise ValidationError("phone_format", "must be 'national' or 'international'")


def mask_phone(number: str) -> str:
    """A form fit for logs: ``0912***678`` (first 4 digits, ``***``, last 3).

    Never raises and never shows more than 7 digits. A number that normalizes is masked in
    its national form, so every spelling of one number masks alike; anything else is
    masked from its digits, showing fewer of them the shorter it is.
    """
    try:
        return _mask_digits(normalize_phone(number))
    except ValidationError:
        pass
    if not isinstance(number, str):
        return "***"
    digits = "".join(ch for ch in number[:MAX_RAW_LENGTH] if "0" <= ch <= "9")
    plus = "+" if number.strip(_SURROUNDING_WHITESPACE).startswith("+") and digits else ""
    return plus + _mask_digits(digits)


def _mask_digits(digits: str) -> str:
    # Short strings keep most digits hidden: 4 + 3 shown of a 7-digit string would be all.
    if len(digits) >= NATIONAL_LENGTH:
        return f"{digits[:4]}***{digits[-3:]}"
    if len(digits) >= 6:
        return f"{digits[:2]}***{digits[-2:]}"
    return "***"


def _digits(raw: object) -> tuple[str, str | None]:
    """The digits of ``raw``, and the part after a ``+`` (``None`` when there was none)."""
    if not isinstance(raw, str):
        _reject(f"must be a string, not {type(raw).__name__}")
    if len(raw) > MAX_RAW_LENGTH:
        _reject(f"too long to be a phone number ({len(raw)} characters)")
    text = raw.lstrip(_SURROUNDING_WHITESPACE)
    offset = len(raw) - len(text)  # so positions count in the input as given
    text = text.rstrip(_SURROUNDING_WHITESPACE)
    if not text:
        _reject("empty")

    digits: list[str] = []
    plus_at: int | None = None
    depth = 0
    for index, ch in enumerate(text):
        position = offset + index + 1
        if "0" <= ch <= "9":
            digits.append(ch)
        elif ch in _SEPARATORS:
            continue
        elif ch == "(":
            depth += 1
            if depth > 1:
                _reject(f"nested parentheses at position {position}")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                _reject(f"')' without '(' at position {position}")
        elif ch == "+":
            if digits or plus_at is not None:
                _reject(f"'+' is allowed only before the country code (position {position})")
            plus_at = len(digits)
        else:
            _reject(f"{_describe(ch)} at position {position}; a phone number holds digits, "
                    "spaces, '.', '-', '(', ')' and a leading '+'")
    if depth:
        _reject("'(' without ')'")
    if not digits:
        _reject("no digits")
    joined = "".join(digits)
    return joined, (joined if plus_at is not None else None)


def _describe(ch: str) -> str:
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return f"control character U+{ord(ch):04X}"
    if ch.isalpha():
        return "a letter"
    if ch.isdigit():
        return f"a digit that is not 0-9 (U+{ord(ch):04X})"
    return f"unexpected character U+{ord(ch):04X}"


def _national(significant: str) -> str:
    """The canonical form of the digits after the trunk 0 (or after +84)."""
    if significant.startswith("2"):
        _reject(f"{_NOT_MOBILE}: landline (area code {_area_code(significant)})")
    if significant.startswith("1") and len(significant) == NATIONAL_LENGTH:
        old = "0" + significant[:3]
        new = OLD_TO_NEW_PREFIX.get(old)
        if new is None:
            _reject(f"{_NOT_MOBILE}: old 11-digit prefix {old} has no 10-digit equivalent")
        significant = new[1:] + significant[3:]
    length = len(significant) + 1
    if length < NATIONAL_LENGTH:
        _reject(f"too short: {length} digits in national form, a Vietnamese mobile number "
                f"has {NATIONAL_LENGTH}")
    if length > NATIONAL_LENGTH:
        _reject(f"too long: {length} digits in national form, a Vietnamese mobile number "
                f"has {NATIONAL_LENGTH}")
    prefix = "0" + significant[:2]
    why = REFUSED_MOBILE_PREFIXES.get(prefix)
    if why is not None:
        _reject(f"{_NOT_MOBILE}: prefix {prefix} is not in service ({why})")
    pattern = _mobile_patterns().get(len(significant))
    if pattern is None or pattern.match(significant) is None:
        _reject(f"{_NOT_MOBILE}: {_unassigned(significant)}")
    return "0" + significant


def carrier_of(number: str) -> str:
    """The operator libphonenumber names for a mobile number's range (``"Viettel"``).

    ``""`` when it names none. This is the range's operator: a number ported to another
    network keeps its prefix. Raises :class:`ValidationError` like
    :func:`normalize_phone`. Not for the hot path: the carrier data loads on first use.
    """
    from phonenumbers import carrier  # here: the carrier data is only for this

    national = normalize_phone(number)
    return str(carrier.name_for_number(_number(national[1:]), "en"))


@cache
def _mobile_patterns() -> Mapping[int, re.Pattern[str]]:
    """Significant-number length → one pattern that matches exactly the numbers of that
    length libphonenumber types as ``MOBILE`` for Vietnam.

    libphonenumber's own check (``number_type``) tries its metadata's patterns one by one
    (general → premium, toll-free, … → fixed line → mobile), 5-9 µs a number; the same
    rule folded into one compiled pattern per length costs about 0.3 µs. Built once per
    process, on first use, so importing this module stays cheap.
    """
    import phonenumbers  # here: 15 ms of import, paid by the first number

    meta = phonenumbers.PhoneMetadata.metadata_for_region("VN")
    if meta is None or meta.same_mobile_and_fixed_line_pattern:
        return MappingProxyType({})
    # the types number_type tries before mobile: a number matching one of them is not mobile
    before = (meta.premium_rate, meta.toll_free, meta.shared_cost, meta.voip,
              meta.personal_number, meta.pager, meta.uan, meta.voicemail, meta.fixed_line)
    patterns: dict[int, re.Pattern[str]] = {}
    # no lengths on a type means "the general ones" (libphonenumber's convention)
    for length in _lengths(meta.mobile) or _lengths(meta.general_desc):
        if not (_fits(meta.general_desc, length) and _fits(meta.mobile, length)):
            continue
        excluded = [_pattern(d) for d in before if _fits(d, length)]
        required = _pattern(meta.general_desc)
        source = (rf"(?!(?:{'|'.join(excluded)})\Z)" if excluded else "") + (
            rf"(?=(?:{required})\Z)(?:{_pattern(meta.mobile)})\Z"
        )
        patterns[length] = re.compile(source)
    return MappingProxyType(patterns)


def _lengths(desc: PhoneNumberDesc | None) -> tuple[int, ...]:
    return tuple(desc.possible_length or ()) if desc is not None else ()


def _pattern(desc: PhoneNumberDesc | None) -> str:
    return (desc.national_number_pattern or "") if desc is not None else ""


def _fits(desc: PhoneNumberDesc | None, length: int) -> bool:
    """Whether libphonenumber would try ``desc``'s pattern on a number of this length."""
    if desc is None or not _pattern(desc):
        return False
    lengths = _lengths(desc)
    return not lengths or length in lengths


def _number(significant: str) -> PhoneNumber:
    from phonenumbers import PhoneNumber

    return PhoneNumber(country_code=int(COUNTRY_CODE), national_number=int(significant))


def _unassigned(significant: str) -> str:
    """Why a number of the right length is refused, naming the shortest prefix that says it."""
    from phonenumbers import PhoneNumberType as Type
    from phonenumbers import number_type

    kind = {
        Type.FIXED_LINE: "landline",
        Type.TOLL_FREE: "toll-free number",
        Type.PREMIUM_RATE: "premium-rate number",
        Type.VOIP: "VoIP number",
        Type.UAN: "service number",
    }.get(number_type(_number(significant)))
    if kind is not None:
        return f"{kind} (prefix 0{significant[:3]})"
    pattern = _mobile_patterns().get(len(significant))
    # the whole 3-digit prefix when none of its ranges is mobile, else the 4-digit one
    # (libphonenumber splits some prefixes: 0522 is a mobile range, 0521 is not)
    filler = "0" * (len(significant) - 3)
    whole = pattern is None or not any(
        pattern.match(significant[:2] + d + filler) for d in "0123456789"
    )
    prefix = "0" + significant[: 2 if whole else 3]
    return f"prefix {prefix} is not an assigned mobile prefix"


def _area_code(significant: str) -> str:
    three = "0" + significant[:2]
    if three in _THREE_DIGIT_AREA_CODES or len(significant) < 3:
        return three
    return "0" + significant[:3]


def _country_code(international: str) -> str:
    if international[0] in "17":
        return international[0]
    if international[:2] in _TWO_DIGIT_COUNTRY_CODES:
        return international[:2]
    return international[:3]


def _reject(reason: str) -> NoReturn:
    raise ValidationError(FIELD, reason)
