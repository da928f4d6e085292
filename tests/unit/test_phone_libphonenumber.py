"""The phone rules against libphonenumber: the same verdict on every prefix, in every written
form, but for the deliberate differences listed here (docs/phone-numbers.md, "Exceptions")."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumberType

from tests.unit.test_phone import NOT_MOBILE, echoes_digits, lib_mobile, reason_for
from worker.errors import ValidationError
from worker.rules import normalize_phone
from worker.rules.phone import OLD_TO_NEW_PREFIX, REFUSED_MOBILE_PREFIXES, carrier_of

#: where the rules refuse what libphonenumber accepts; the other listed difference, the old
#: 11-digit numbers libphonenumber refuses and we convert, is tested below
DELIBERATE_DIFFERENCES = {"095"}

#: every written form a customer database holds, by name: significant digits → text
FORMS: dict[str, Callable[[str], str]] = {
    "national": lambda sig: f"0{sig}",
    "84": lambda sig: f"84{sig}",
    "+84": lambda sig: f"+84{sig}",
    "0084": lambda sig: f"0084{sig}",
    "national spaced": lambda sig: f"0{sig[:3]} {sig[3:6]} {sig[6:]}",
    "+84 spaced": lambda sig: f"+84 {sig[:2]} {sig[2:5]} {sig[5:]}",
    "dots": lambda sig: f"0{sig[:3]}.{sig[3:6]}.{sig[6:]}",
    "dashes": lambda sig: f"0084-{sig[:2]}-{sig[2:5]}-{sig[5:]}",
    "(+84) mixed": lambda sig: f"(+84) {sig[:2]}.{sig[2:5]}-{sig[5:]}",
}


def lib_reading(written: str) -> str | None:
    """What libphonenumber makes of a written number: the national form of a mobile, or None."""
    try:
        number = phonenumbers.parse(written, "VN")
    except NumberParseException:
        return None
    if number.country_code != 84 or phonenumbers.number_type(number) != PhoneNumberType.MOBILE:
        return None
    return f"0{number.national_number}"


def our_reading(written: str) -> str | None:
    try:
        return normalize_phone(written)
    except ValidationError:
        return None


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_rules_agree_with_libphonenumber_on_every_prefix_but_the_listed_ones(
    form: str,
) -> None:
    # Given a 10-digit number for every start 01000-09999 (libphonenumber splits some
    # prefixes at the fourth digit, 0522 is mobile and 0521 not, and 0121 at the fifth),
    # written in this form
    spell = FORMS[form]
    differ: set[str] = set()
    accepted = 0
    for start in range(1000, 10_000):
        significant = f"{start}{start * 7919 % 100_000:05d}"
        written = spell(significant)
        # When both read it
        ours, theirs = our_reading(written), lib_reading(written)
        accepted += ours is not None
        # Then both refuse it, or both accept it as the same number
        if ours != theirs:
            differ.add(f"0{significant[:3]}")
    # ... except for the deliberate differences, each of which covers its whole prefix
    assert {p[:3] for p in differ} == DELIBERATE_DIFFERENCES
    assert differ == {f"{p}{d}" for p in DELIBERATE_DIFFERENCES for d in "0123456789"}
    assert accepted > 500  # four-digit ranges; a sweep that accepts nothing proves nothing


def test_the_exceptions_in_the_code_are_the_listed_ones_and_still_differ() -> None:
    assert set(REFUSED_MOBILE_PREFIXES) == DELIBERATE_DIFFERENCES
    for prefix in DELIBERATE_DIFFERENCES:
        # if libphonenumber stops listing the range, the exception is no longer one: drop it
        assert lib_mobile(f"{prefix[1:]}1234567"), f"{prefix} agrees with libphonenumber now"


def test_s_fones_former_range_is_refused_with_its_reason() -> None:
    # Given 095, which libphonenumber still types as mobile (with no operator named)
    # When normalized, Then it is refused, saying why
    reason = reason_for("0951234567")
    assert reason == (
        "not a Vietnamese mobile number: prefix 095 is not in service "
        "(S-Fone's former range, no network serves it)"
    )
    assert reason_for("+84 95 123 4567") == reason


@pytest.mark.parametrize(
    "national",
    [
        "0301234567",  # MobiFone
        "0311234567",  # Viettel
        "0511234567",  # MobiFone
        "0522123456",  # Vietnamobile: 0522, 0523, 0528 of 052
        "0559123456",  # Reddi: 0559 of 055
        "0896123456",  # MobiFone: 0896-0899 of 089
        "0993123456",  # Gmobile: 099 but 0992
        "0121012345",  # MobiFone: 10-digit numbers under the old 0121 (0121 0-3)
        "0140123456",  # MobiFone
        "0160123456",  # Viettel
    ],
)
def test_ranges_libphonenumber_lists_as_mobile_are_accepted(national: str) -> None:
    assert lib_mobile(national[1:])
    assert normalize_phone(national) == national
    assert normalize_phone(f"+84 {national[1:]}") == national


@pytest.mark.parametrize("prefix", ["069", "080", "071", "050", "010", "060", "057"])
def test_unassigned_ten_digit_prefixes_are_refused(prefix: str) -> None:
    reason = reason_for(f"{prefix}1234567")
    assert reason == f"{NOT_MOBILE}: prefix {prefix} is not an assigned mobile prefix"


@pytest.mark.parametrize("prefix", ["0521", "0550", "0558", "0895", "0992", "0122", "0162"])
def test_unassigned_ranges_inside_assigned_prefixes_are_refused_naming_four_digits(
    prefix: str,
) -> None:
    # Given a number whose 3-digit prefix has mobile ranges, but not this 4-digit one
    # (the hand-written table accepted every 052, 055, 089 and 099 number)
    reason = reason_for(f"{prefix}123456")
    assert reason == f"{NOT_MOBILE}: prefix {prefix} is not an assigned mobile prefix"
    assert not echoes_digits(reason)


def test_other_kinds_of_number_are_refused_naming_the_kind() -> None:
    # 0672: VSAT's range, typed VoIP by libphonenumber
    assert reason_for("0672 123 456") == "not a Vietnamese mobile number: VoIP number (prefix 0672)"


def test_importing_the_rules_does_not_load_libphonenumber() -> None:
    # the producer imports these rules; the 15 ms of phonenumbers is paid by the first number
    code = (
        "import sys, worker.rules.phone as p; a = 'phonenumbers' in sys.modules; "
        "p.normalize_phone('0912345678'); print(a, 'phonenumbers' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == ["False", "True"]


# --- the old 11-digit numbers ---------------------------------------------------------------


def test_only_the_old_prefixes_in_the_table_are_converted_which_libphonenumber_refuses() -> None:
    # The listed difference: libphonenumber refuses every 11-digit 01xx number; we convert
    # exactly the table's, and the result is then a number libphonenumber accepts.
    converted = set()
    for prefix in range(100, 200):
        significant = f"{prefix}{prefix * 7919 % 10_000_000:07d}"
        assert not lib_mobile(significant)
        national = our_reading(f"0{significant}")
        if national is not None:
            converted.add(f"0{prefix}")
            assert national == OLD_TO_NEW_PREFIX[f"0{prefix}"] + significant[3:]
            assert lib_mobile(national[1:])
    assert converted == set(OLD_TO_NEW_PREFIX)


@pytest.mark.parametrize("new", sorted(set(OLD_TO_NEW_PREFIX.values())))
def test_every_conversion_lands_on_a_range_libphonenumber_lists_as_mobile(new: str) -> None:
    assert all(lib_mobile(f"{new[1:]}{d}123456") for d in "0123456789")


# --- carrier --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "operator"),
    [
        ("0912345678", "Vinaphone"),
        ("+84 96 123 4567", "Viettel"),
        ("0162 123 4567", "Viettel"),  # converted first: 032
        ("0121 123 4567", "MobiFone"),  # converted first: 079
        ("0921234567", "Vietnamobile"),
        ("0591234567", "G-Mobile"),
    ],
)
def test_the_carrier_is_libphonenumbers_for_the_normalized_number(raw: str, operator: str) -> None:
    assert carrier_of(raw) == operator


def test_the_carrier_of_a_refused_number_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        carrier_of("0951234567")
    assert caught.value.field == "phone"
