"""Phone rules: every form a customer database holds becomes ``0912345678``, or is refused."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberType

import worker.rules
from worker.errors import ValidationError
from worker.rules import format_for_gateway, mask_phone, normalize_phone
from worker.rules.phone import OLD_TO_NEW_PREFIX, REFUSED_MOBILE_PREFIXES

CANONICAL = re.compile(r"^0\d{9}$")
NOT_MOBILE = "not a Vietnamese mobile number"
#: a reason may name an area code, a position or a code point, never a run of the number's
#: digits
LONG_DIGIT_RUN = re.compile(r"\d{5,}")
CODE_POINT = re.compile(r"U\+[0-9A-F]{4,6}")


def echoes_digits(message: str) -> bool:
    return LONG_DIGIT_RUN.search(CODE_POINT.sub("", message)) is not None


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


#: national 3-digit prefixes all of whose numbers libphonenumber types as mobile, less our
#: named exceptions: numbers drawn from these are valid whatever the subscriber digits
WHOLE_MOBILE_PREFIXES = sorted(
    f"0{p}" for p in range(10, 100)
    if f"0{p}" not in REFUSED_MOBILE_PREFIXES
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
