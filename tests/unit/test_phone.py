"""Phone rules: every form a customer database holds becomes ``0912345678``, or is refused."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

import worker.rules
from worker.errors import ValidationError
from worker.rules import format_for_gateway, mask_phone, normalize_phone
from worker.rules.phone import OLD_TO_NEW_PREFIX, REFUSED_MOBILE_PREFIXES, carrier_of

CANONICAL = re.compile(r"^0\d{9}$")
NOT_MOBILE = "not a Vietnamese mobile number"
#: a reason may name an area code, a position or a code point, never a run of the number's
#: digits
LONG_DIGIT_RUN = re.compile(r"\d{5,}")
CODE_POINT = re.compile(r"U\+[0-9A-F]{4,6}")


def echoes_digits(message: str) -> bool:
    return LONG_DIGIT_RUN.search(CODE_POINT.sub("", message)) is not None

#: Where the rules deliberately refuse what libphonenumber accepts (docs/phone-numbers.md,
#: "Exceptions"). The other listed difference, the old 11-digit numbers, is tested below.
DELIBERATE_DIFFERENCES = {"095"}

#: the MIC's 2018 plan (docs/phone-numbers.md), copied row by row
DOCUMENTED_OLD_PREFIXES = {
    "0162": "032", "0163": "033", "0164": "034", "0165": "035", "0166": "036",
    "0167": "037", "0168": "038", "0169": "039",
    "0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078",
    "0186": "056", "0188": "058",
    "0123": "083", "0124": "084", "0125": "085", "0127": "081", "0129": "082",
    "0199": "059",
}


def lib_mobile(significant: str) -> bool:
    """libphonenumber's own verdict: a valid Vietnamese number of type MOBILE."""
    number = PhoneNumber(country_code=84, national_number=int(significant))
    return phonenumbers.number_type(number) == PhoneNumberType.MOBILE


#: national 3-digit prefixes all of whose numbers libphonenumber types as mobile, less the
#: deliberate differences: numbers drawn from these are valid whatever the subscriber digits
WHOLE_MOBILE_PREFIXES = sorted(
    f"0{p}" for p in range(10, 100)
    if f"0{p}" not in DELIBERATE_DIFFERENCES
    and all(lib_mobile(f"{p}{d}{tail}") for d in "0123456789" for tail in ("000000", "999999"))
)


def reason_for(raw: object) -> str:
    with pytest.raises(ValidationError) as caught:
        normalize_phone(raw)  # type: ignore[arg-type]
    assert caught.value.field == "phone"
    return caught.value.reason


# --- accepted forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0912345678",
        "84912345678",
        "+84912345678",
        "+84 912 345 678",
        "0912.345.678",
        "0912-345-678",
        "(+84) 912345678",
        "0084912345678",
        "00 84 912 345 678",
        "+84 (0) 912 345 678",  # the trunk 0 written after the country code
        "840912345678",
        "(091) 234 5678",
        "0912\u00a0345\u00a0678",  # no-break spaces pasted from office software
        "0912\u2013345\u2013678",  # en dashes
        "  0912345678\r\n",  # a line read from a CSV file
        "\t+84912345678 ",
    ],
)
def test_every_common_form_becomes_the_national_form(raw: str) -> None:
    # Given a Vietnamese mobile number written the way customer databases hold it
    # When it is normalized
    # Then the result is the one canonical national form
    assert normalize_phone(raw) == "0912345678"


def test_whole_mobile_prefixes_are_what_the_property_tests_draw_from() -> None:
    # a guard on the helper: if libphonenumber's data shrank to nothing, the properties
    # below would test nothing
    assert {"032", "070", "086", "091", "096"} <= set(WHOLE_MOBILE_PREFIXES)
    assert "095" not in WHOLE_MOBILE_PREFIXES


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


# --- the 2018 move from 11 to 10 digits -----------------------------------------------------


def test_old_prefix_table_is_the_documented_one() -> None:
    assert dict(OLD_TO_NEW_PREFIX) == DOCUMENTED_OLD_PREFIXES


@pytest.mark.parametrize(("old", "new"), sorted(DOCUMENTED_OLD_PREFIXES.items()))
@pytest.mark.parametrize(
    "spell",
    [
        lambda p: f"{p}1234567",  # 0162 1234567
        lambda p: f"84{p[1:]}1234567",  # 84162…
        lambda p: f"+84 {p[1:]} 123 4567",  # +84 162 …
        lambda p: f"0084-{p[1:]}-123-4567",
    ],
    ids=["national", "84", "+84 spaced", "0084 dashed"],
)
def test_every_old_eleven_digit_number_moves_to_ten_digits(old: str, new: str, spell) -> None:  # type: ignore[no-untyped-def]
    # Given an 11-digit number from before 2018 (the gateway would answer code 31)
    # When it is normalized
    # Then it is the 10-digit number: new prefix, same 7 subscriber digits
    assert normalize_phone(spell(old)) == f"{new}1234567"


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


@pytest.mark.parametrize("old", ["0161", "0130", "0195", "0100"])
def test_old_prefixes_without_a_new_number_are_refused(old: str) -> None:
    assert f"old 11-digit prefix {old} has no 10-digit equivalent" in reason_for(f"{old}1234567")


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "area"),
    [
        ("024 3826 1234", "024"),  # Hanoi
        ("028 3822 1234", "028"),  # Ho Chi Minh City
        ("0236 3822 123", "0236"),  # Da Nang
        ("+84 24 3826 1234", "024"),
        ("84 225 3822 123", "0225"),  # Hai Phong
        ("024", "024"),
    ],
)
def test_landlines_are_refused_naming_the_area_code(raw: str, area: str) -> None:
    reason = reason_for(raw)
    assert reason == f"not a Vietnamese mobile number: landline (area code {area})"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("+1 202 555 0123", "1"),
        ("+44 7911 123456", "44"),
        ("0065 9123 4567", "65"),
        ("+86 139 1234 5678", "86"),
        ("+7 912 345 6789", "7"),
        ("+855 12 345 678", "855"),
        ("(+66) 81 234 5678", "66"),
    ],
)
def test_foreign_numbers_are_refused_naming_the_country_code(raw: str, code: str) -> None:
    reason = reason_for(raw)
    assert reason == f"not a Vietnamese mobile number: foreign number (country code +{code})"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\r\n", "empty"),
        ("abc", "a letter at position 1"),
        ("09l2345678", "a letter at position 3"),
        ("0912345678 ext 5", "a letter at position 12"),
        ("tel:+84912345678", "a letter at position 1"),
        ("0912#345678", "unexpected character U+0023 at position 5"),
        ("0912,345,678", "unexpected character U+002C at position 5"),
        ("٠٩١٢٣٤٥٦٧٨", "a digit that is not 0-9 (U+0660) at position 1"),
        ("0912\x00345678", "control character U+0000 at position 5"),
        ("0912\t345678", "control character U+0009 at position 5"),
        ("0912\u200b345678", "control character U+200B at position 5"),
        ("0912345678\x1b", "control character U+001B at position 11"),
        ("+-+", "'+' is allowed only before the country code (position 3)"),
        ("84+912345678", "'+' is allowed only before the country code (position 3)"),
        ("((0912)) 345678", "nested parentheses at position 2"),
        ("0912) 345678", "')' without '(' at position 5"),
        ("(0912 345678", "'(' without ')'"),
        ("-- . --", "no digits"),
        ("+", "no digits"),
        ("00", "no country code after the international prefix"),
        ("+0912345678", "an international prefix must be followed by a country code, not 0"),
        ("+84 00 912 345 678", "more than one 0 after the country code 84"),
        ("912345678", "no leading 0, 84 or +84"),
        ("1900 1234", "no leading 0, 84 or +84"),
        ("0912 345", "too short: 7 digits in national form"),
        ("091234567", "too short: 9 digits"),
        ("+84 912 345 67", "too short: 9 digits"),
        ("09123456789", "too long: 11 digits"),
        ("0912 345 678 0912 345 678", "too long: 20 digits"),
        ("0" * 65, "too long to be a phone number (65 characters)"),
    ],
)
def test_garbage_is_refused_with_a_reason_that_names_the_problem(raw: str, expected: str) -> None:
    reason = reason_for(raw)
    assert expected in reason
    assert not echoes_digits(reason), "a reason must not echo the number"


@pytest.mark.parametrize("raw", [None, 912345678, 84912345678.0, b"0912345678", ["0912345678"]])
def test_non_strings_are_refused(raw: object) -> None:
    assert reason_for(raw) == f"must be a string, not {type(raw).__name__}"


def test_a_refusal_never_echoes_the_number() -> None:
    # Given numbers refused for every reason, each with a recognizable digit run
    for raw in ["0951234567", "+44 7911 123456", "024 3826 1234", "09123456789", "0161 1234567"]:
        # When refused, Then the message (what lands in logs) holds no run of its digits
        with pytest.raises(ValidationError) as caught:
            normalize_phone(raw)
        assert not echoes_digits(str(caught.value))


# --- format for the gateway -----------------------------------------------------------------


def test_gateway_national_format() -> None:
    assert format_for_gateway("0912345678", "national") == "0912345678"


def test_gateway_international_format_has_no_plus() -> None:
    # a "+" in a query string arrives at the gateway as a space
    assert format_for_gateway("0912345678", "international") == "84912345678"


def test_gateway_format_checks_its_input_again() -> None:
    assert format_for_gateway("+84 162 123 4567", "national") == "0321234567"
    with pytest.raises(ValidationError) as caught:
        format_for_gateway("024 3826 1234", "international")
    assert caught.value.field == "phone"


def test_gateway_format_refuses_an_unknown_format() -> None:
    with pytest.raises(ValidationError) as caught:
        format_for_gateway("0912345678", "e164")  # type: ignore[arg-type]
    assert caught.value.field == "phone_format"


# --- masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("0912345678", "0912***678"),
        ("+84 912 345 678", "0912***678"),  # every spelling of a number masks alike
        ("84912345678", "0912***678"),
        ("01621234567", "0321***567"),
        ("+44 7911 123456", "+4479***456"),
        ("024 3826 1234", "0243***234"),
        ("09123456789", "0912***789"),
        ("0912345", "09***45"),
        ("123456", "12***56"),
        ("12345", "***"),
        ("12", "***"),
        ("", "***"),
        ("abc", "***"),
        ("+", "***"),
        (None, "***"),
        (912345678, "***"),
    ],
)
def test_masks_show_at_most_the_first_four_and_last_three_digits(raw: object, masked: str) -> None:
    assert mask_phone(raw) == masked  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------

SEPARATORS = ["", "", "", " ", ".", "-", "\u00a0"]


@st.composite
def written_numbers(draw: st.DrawFn, *, old: bool = False) -> tuple[str, str]:
    """A valid number in a random spelling, and its canonical form."""
    if old:
        old_prefix, new = draw(st.sampled_from(sorted(OLD_TO_NEW_PREFIX.items())))
        significant_prefix, canonical_prefix = old_prefix[1:], new
    else:
        prefix = draw(st.sampled_from(WHOLE_MOBILE_PREFIXES))
        significant_prefix, canonical_prefix = prefix[1:], prefix
    subscriber = draw(st.text(alphabet="0123456789", min_size=7, max_size=7))
    lead = draw(st.sampled_from(["0", "84", "+84", "0084", "(+84)", "+84 (0)", "(0", "+84 0"]))
    body = significant_prefix + subscriber
    if lead == "(0":  # "(091) 234 5678"
        lead, body = "(0", significant_prefix + ")" + subscriber
    gaps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(body), max_size=len(body)))
    spelled = lead + draw(st.sampled_from(["", " "])) + "".join(
        gap + ch for gap, ch in zip(gaps, body, strict=True)
    )
    padded = draw(st.sampled_from(["", " ", "\n"])) + spelled + draw(st.sampled_from(["", " "]))
    return padded, canonical_prefix + subscriber


@given(written_numbers())
def test_any_spelling_of_a_valid_number_normalizes_to_its_canonical_form(
    case: tuple[str, str],
) -> None:
    raw, canonical = case
    national = normalize_phone(raw)
    assert national == canonical
    assert CANONICAL.match(national)
    assert lib_mobile(national[1:])
    assert normalize_phone(national) == national  # idempotent


@given(written_numbers(old=True))
def test_any_spelling_of_an_old_number_normalizes_to_its_new_number(
    case: tuple[str, str],
) -> None:
    raw, canonical = case
    assert normalize_phone(raw) == canonical
    assert normalize_phone(normalize_phone(raw)) == canonical


@given(written_numbers())
def test_masks_of_valid_numbers_agree_across_spellings(case: tuple[str, str]) -> None:
    raw, canonical = case
    assert mask_phone(raw) == f"{canonical[:4]}***{canonical[-3:]}"


PHONEISH = st.text(alphabet="0123456789+()-. 84\u00a0\nx\x00", max_size=30)


@given(st.one_of(st.text(max_size=80), PHONEISH))
def test_arbitrary_text_is_either_a_canonical_number_or_a_validation_error(raw: str) -> None:
    # Whatever arrives, the only exception is ValidationError (anything else would crash
    # the producer); a success is canonical and stable; a refusal echoes no digit run.
    try:
        national = normalize_phone(raw)
    except ValidationError as exc:
        assert exc.field == "phone"
        assert not echoes_digits(str(exc))
    else:
        assert CANONICAL.match(national)
        assert lib_mobile(national[1:])
        assert national[:3] not in REFUSED_MOBILE_PREFIXES
        assert normalize_phone(national) == national


@given(st.one_of(st.text(max_size=200), PHONEISH))
def test_a_mask_never_raises_and_never_shows_more_than_seven_digits(raw: str) -> None:
    masked = mask_phone(raw)
    assert sum(ch.isdigit() for ch in masked) <= 7
    assert "***" in masked


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


def test_the_package_exports_its_public_functions() -> None:
    assert sorted(worker.rules.__all__) == [
        "PreparedText",
        "format_for_gateway",
        "mask_phone",
        "normalize_phone",
        "prepare_text",
        "strip_vietnamese_diacritics",
    ]
    for name in worker.rules.__all__:
        assert getattr(worker.rules, name) is not None
