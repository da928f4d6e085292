"""Text rules: what is sent, under which serviceType, and how many SMS it costs."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import ValidationError
from worker.rules import PreparedText, prepare_text, strip_vietnamese_diacritics
from worker.rules.text import GSM_BASIC, GSM_EXTENSION, STRIP_TABLE, count_segments

#: every Vietnamese letter with diacritics, lower case, grouped by the letter it strips to
VIETNAMESE = {
    "a": "ăâáàảãạấầẩẫậắằẳẵặ",
    "e": "êéèẻẽẹếềểễệ",
    "o": "ôơóòỏõọốồổỗộớờởỡợ",
    "u": "ưúùủũụứừửữự",
    "i": "íìỉĩị",
    "y": "ýỳỷỹỵ",
    "d": "đ",
}
ALL_VIETNAMESE = "".join(VIETNAMESE.values())
ALL_VIETNAMESE_STRIPPED = "".join(base * len(letters) for base, letters in VIETNAMESE.items())
#: the marks Vietnamese letters decompose into: 5 tones, breve, circumflex, horn
VIETNAMESE_MARKS = set("\u0300\u0301\u0303\u0309\u0323\u0306\u0302\u031b")

SENTENCE = (
    "Đặng Thị Hương ở phố Nguyễn Trãi, Hà Nội: đơn hàng #1234 của bạn đã được giao lúc "
    "9 giờ sáng. Cảm ơn quý khách! Trăm năm trong cõi người ta, chữ tài chữ mệnh khéo là "
    "ghét nhau. Ỷ Ỹ Ỵ Ý Ỳ ỨỪỬỮỰ."
)
SENTENCE_STRIPPED = (
    "Dang Thi Huong o pho Nguyen Trai, Ha Noi: don hang #1234 cua ban da duoc giao luc "
    "9 gio sang. Cam on quy khach! Tram nam trong coi nguoi ta, chu tai chu menh kheo la "
    "ghet nhau. Y Y Y Y Y UUUUU."
)


def reason_for(text: object, **options: object) -> str:
    with pytest.raises(ValidationError) as caught:
        prepare_text(text, **options)  # type: ignore[arg-type]
    assert caught.value.field == "text"
    return caught.value.reason


# --- the data ------------------------------------------------------------------------------


def test_gsm_alphabet_is_the_standard_127_plus_9() -> None:
    # 128 code points in the default table, one of them the escape to the extension table
    assert len(GSM_BASIC) == len(set(GSM_BASIC)) == 127
    assert len(GSM_EXTENSION) == len(set(GSM_EXTENSION)) == 9
    assert not set(GSM_BASIC) & set(GSM_EXTENSION)
    # the lookup runs on NFC text, so every entry must be NFC itself
    for ch in GSM_BASIC + GSM_EXTENSION:
        assert unicodedata.normalize("NFC", ch) == ch


def test_strip_table_covers_every_vietnamese_letter_in_both_cases() -> None:
    assert len(STRIP_TABLE) == 2 * len(ALL_VIETNAMESE) == 134
    for letter, base in STRIP_TABLE.items():
        decomposed = unicodedata.normalize("NFD", letter)
        if letter in "đĐ":
            assert base == {"đ": "d", "Đ": "D"}[letter]
            continue
        # each is its base letter plus only Vietnamese marks
        assert decomposed[0] == base
        assert set(decomposed[1:]) <= VIETNAMESE_MARKS


# --- segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length", "segments"),
    [
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 153 * 2, 306, 2),
        ("a" * (153 * 2 + 1), 307, 3),
        ("a" * 153 * 6, 918, 6),
    ],
)
def test_plain_segment_boundaries(text: str, length: int, segments: int) -> None:
    prepared = prepare_text(text)
    assert (prepared.service_type, prepared.length, prepared.segments) == (0, length, segments)


@pytest.mark.parametrize(
    ("text", "length", "segments"),
    [
        ("^" * 80, 160, 1),
        ("^" * 80 + "a", 161, 2),
        ("a" * 159 + "^", 161, 2),
        (("a" + "{}[]~|\\^^" * 8 + "{}[]") * 2, 153 * 2, 2),
        (("a" + "{}[]~|\\^^" * 8 + "{}[]") * 2 + "a", 153 * 2 + 1, 3),
        ("^" * 153, 306, 3),  # a part holds 76 of them: 152 septets, never half a pair
    ],
)
def test_extension_characters_cost_two_septets(text: str, length: int, segments: int) -> None:
    prepared = prepare_text(text)
    assert (prepared.service_type, prepared.length, prepared.segments) == (0, length, segments)


def test_an_escape_pair_is_never_split_across_two_parts() -> None:
    # Given 306 septets (two full parts' worth) with "^" straddling the end of part one
    text = "a" * 152 + "^" + "a" * 152
    # When counted, Then "^" moves to part two and the last "a" needs a third part
    assert prepare_text(text).segments == 3


@pytest.mark.parametrize(
    ("text", "length", "segments"),
    [
        ("ệ" * 70, 70, 1),
        ("ệ" * 71, 71, 2),
        ("ệ" * 67 * 2, 134, 2),
        ("ệ" * (67 * 2 + 1), 135, 3),
    ],
)
def test_unicode_segment_boundaries(text: str, length: int, segments: int) -> None:
    prepared = prepare_text(text)
    assert (prepared.service_type, prepared.length, prepared.segments) == (1, length, segments)


@pytest.mark.parametrize(
    ("text", "length", "segments"),
    [
        ("😀" * 35, 70, 1),
        ("😀" * 35 + "a", 71, 2),
        ("😀", 2, 1),
    ],
)
def test_emoji_are_unicode_and_count_two_units(text: str, length: int, segments: int) -> None:
    prepared = prepare_text(text)
    assert (prepared.service_type, prepared.length, prepared.segments) == (1, length, segments)


def test_a_surrogate_pair_is_never_split_across_two_parts() -> None:
    text = "ж" * 66 + "😀" + "ж" * 66  # 134 units: two full parts if the emoji could be split
    assert prepare_text(text).segments == 3


def test_count_segments_on_its_own() -> None:
    assert count_segments("a" * 161, 0) == (161, 2)
    assert count_segments("a" * 161, 1) == (161, 3)
    with pytest.raises(ValidationError, match=r"'ệ' \(U\+1EC7\) at position 3 cannot be sent"):
        count_segments("Việt", 0)


# --- serviceType ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Your OTP is 123456", "$5 @ Cafe, 50% off!", "line one\r\nline two", "{json}~^|"],
)
def test_ascii_text_in_the_gsm_alphabet_goes_plain(text: str) -> None:
    prepared = prepare_text(text)
    assert prepared.service_type == 0
    assert prepared.text == text


@pytest.mark.parametrize(
    "text",
    ["Mã OTP của bạn là 123456", "Đơn hàng", "日本", "Привет", "a😀",
     # GSM has these, but FIBO's plain type is "without diacritics": they go as Unicode
     "Xin chào", "Café", "£5", "10€", "`code`"],
)
def test_text_outside_the_plain_set_goes_unicode(text: str) -> None:
    assert prepare_text(text).service_type == 1


def test_unicode_true_forces_service_type_1_and_ucs2_counting() -> None:
    # Given plain ASCII that would fit one plain SMS
    prepared = prepare_text("a" * 71, unicode=True)
    # Then it is sent as Unicode and counted against 70 / 67
    assert (prepared.service_type, prepared.length, prepared.segments) == (1, 71, 2)


def test_unicode_false_refuses_vietnamese_and_suggests_stripping() -> None:
    reason = reason_for("Xin cảm ơn", unicode=False)
    assert "needs Unicode (serviceType 1) but unicode=False" in reason
    assert "'ả' (U+1EA3) at position 6" in reason
    assert "pass strip_diacritics=True" in reason


def test_unicode_false_with_strip_diacritics_sends_vietnamese_plain() -> None:
    prepared = prepare_text("Xin cảm ơn", unicode=False, strip_diacritics=True)
    assert (prepared.text, prepared.service_type) == ("Xin cam on", 0)


def test_unicode_false_refuses_what_stripping_cannot_fix() -> None:
    reason = reason_for("Cảm ơn 😀", unicode=False)
    assert "strip_diacritics=True would not be enough ('😀' (U+1F600) at position 8" in reason
    reason = reason_for("Cảm ơn 😀", unicode=False, strip_diacritics=True)
    assert reason.endswith("at position 8 is not in the GSM 7-bit alphabet, even without "
                           "Vietnamese diacritics")


def test_unicode_false_accepts_plain_text() -> None:
    assert prepare_text("hello", unicode=False).service_type == 0


# --- diacritics ----------------------------------------------------------------------------


def test_strip_every_vietnamese_letter_in_both_cases() -> None:
    assert strip_vietnamese_diacritics(ALL_VIETNAMESE) == ALL_VIETNAMESE_STRIPPED
    assert (strip_vietnamese_diacritics(ALL_VIETNAMESE.upper())
            == ALL_VIETNAMESE_STRIPPED.upper())


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_strip_a_full_vietnamese_sentence(form: str) -> None:
    text = unicodedata.normalize(form, SENTENCE)  # type: ignore[arg-type]
    assert strip_vietnamese_diacritics(text) == SENTENCE_STRIPPED


def test_strip_decomposed_and_half_decomposed_letters() -> None:
    # a base with every mark combining, and a precomposed ê with a combining tone (what
    # some Vietnamese keyboards type)
    assert strip_vietnamese_diacritics("Vie\u0302\u0323t") == "Viet"
    assert strip_vietnamese_diacritics("Vi\u00ea\u0323t") == "Viet"
    assert strip_vietnamese_diacritics("A\u0323\u0306") == "A"  # marks in the other order


def test_d_with_stroke() -> None:
    assert strip_vietnamese_diacritics("đường Đà Nẵng") == "duong Da Nang"


@pytest.mark.parametrize(
    "text", ["ñ ü ç ö ß Ω 日本 😀 Привет", "n\u0303", "e\u031b", "u\u0308\u0301"]
)
def test_strip_leaves_everything_else_untouched(text: str) -> None:
    assert strip_vietnamese_diacritics(text) == text


def test_strip_diacritics_makes_a_vietnamese_text_plain() -> None:
    # Given a sentence with every kind of Vietnamese diacritic, decomposed
    text = unicodedata.normalize("NFD", SENTENCE)
    # When prepared with strip_diacritics
    prepared = prepare_text(text, strip_diacritics=True)
    # Then it is sent plain, without diacritics, counted in septets
    assert prepared.service_type == 0
    assert prepared.text == SENTENCE_STRIPPED
    assert prepared.length == len(SENTENCE_STRIPPED)


def test_decomposed_input_counts_as_it_displays() -> None:
    nfc = "Tiếng Việt " * 6  # 66 characters: one Unicode SMS
    nfd = unicodedata.normalize("NFD", nfc)
    assert len(nfd) > 70  # would be two segments if counted as given
    prepared = prepare_text(nfd)
    assert prepared.text == nfc
    assert (prepared.service_type, prepared.length, prepared.segments) == (1, 66, 1)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("   ", "only whitespace"),
        ("\r\n\n", "only whitespace"),
        ("\u00a0\u2003", "only whitespace"),
    ],
)
def test_empty_text_is_refused(text: str, expected: str) -> None:
    assert reason_for(text) == expected


@pytest.mark.parametrize("text", [None, 42, b"hello", ["hello"]])
def test_non_strings_are_refused(text: object) -> None:
    assert reason_for(text) == f"must be a string, not {type(text).__name__}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OTP\x00123", "control character U+0000 (NUL) at position 4"),
        ("a\tb", "control character U+0009 (tab) at position 2"),
        ("abc\x1b", "control character U+001B (escape) at position 4"),
        ("page\x0cbreak", "control character U+000C (form feed) at position 5"),
        ("x\x7f", "control character U+007F (DEL) at position 2"),
        ("next\x85line", "control character U+0085 at position 5"),  # C1
        ("Việ\x01t", "control character U+0001 at position 4"),
        ("ab\ud800", "lone surrogate U+D800 at position 3"),
    ],
)
def test_control_characters_are_refused_with_their_position(text: str, expected: str) -> None:
    assert reason_for(text).startswith(expected)


def test_line_breaks_are_allowed_and_cost_one_septet_each() -> None:
    prepared = prepare_text("a\r\nb\nc")
    assert (prepared.text, prepared.service_type, prepared.length) == ("a\r\nb\nc", 0, 6)


def test_max_segments_is_a_limit_not_a_target() -> None:
    assert prepare_text("a" * 153 * 6).segments == 6
    reason = reason_for("a" * (153 * 6 + 1))
    assert reason == "too long: it would take 7 SMS segments (919 GSM septets), the limit is 6"


def test_max_segments_can_be_lowered() -> None:
    assert prepare_text("a" * 160, max_segments=1).segments == 1
    assert "the limit is 1" in reason_for("a" * 161, max_segments=1)


def test_a_long_vietnamese_text_is_told_what_stripping_would_cost() -> None:
    reason = reason_for("Cảm ơn " * 100)  # 700 characters: 11 Unicode segments
    assert reason == (
        "too long: it would take 11 SMS segments (700 UTF-16 units), the limit is 6; "
        "with strip_diacritics=True it would take 5"
    )


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_nonsensical_segment_limit_is_refused(limit: object) -> None:
    with pytest.raises(ValidationError) as caught:
        prepare_text("hello", max_segments=limit)  # type: ignore[arg-type]
    assert caught.value.field == "max_segments"


def test_prepared_text_is_frozen() -> None:
    prepared = prepare_text("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.text = "other"  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------

ANY_TEXT = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=1200),  # lone surrogates too
    st.text(alphabet=GSM_BASIC + GSM_EXTENSION + ALL_VIETNAMESE + "😀\x00\t", max_size=1200),
)


@given(
    text=ANY_TEXT,
    unicode=st.sampled_from([None, True, False]),
    strip_diacritics=st.booleans(),
    max_segments=st.integers(min_value=1, max_value=10),
)
def test_any_string_is_prepared_within_the_limit_or_refused(
    text: str, unicode: bool | None, strip_diacritics: bool, max_segments: int
) -> None:
    try:
        prepared = prepare_text(
            text, unicode=unicode, strip_diacritics=strip_diacritics, max_segments=max_segments
        )
    except ValidationError as exc:
        assert exc.field == "text"
        return
    assert isinstance(prepared, PreparedText)
    assert 1 <= prepared.segments <= max_segments
    assert prepared.text == unicodedata.normalize("NFC", prepared.text)
    if prepared.service_type == 0:
        assert unicode is not True
        assert set(prepared.text) <= set(GSM_BASIC + GSM_EXTENSION)
        single, part = 160, 153
    else:
        assert prepared.service_type == 1
        assert unicode is not False
        single, part = 70, 67
    if prepared.segments == 1:
        assert prepared.length <= single
    else:
        assert prepared.length > single
        assert -(-prepared.length // part) <= prepared.segments


@given(st.text(alphabet=ALL_VIETNAMESE + ALL_VIETNAMESE.upper() + "abc XYZ,.", max_size=200))
def test_stripped_vietnamese_is_plain_ascii_whatever_its_normal_form(text: str) -> None:
    nfc = strip_vietnamese_diacritics(unicodedata.normalize("NFC", text))
    nfd = strip_vietnamese_diacritics(unicodedata.normalize("NFD", text))
    assert nfc == nfd
    assert nfc.isascii()
    assert len(nfc) == len(unicodedata.normalize("NFC", text))


@given(st.text(max_size=200))
def test_strip_agrees_on_nfc_and_nfd_input_for_any_text(text: str) -> None:
    nfc = strip_vietnamese_diacritics(unicodedata.normalize("NFC", text))
    nfd = strip_vietnamese_diacritics(unicodedata.normalize("NFD", text))
    assert unicodedata.normalize("NFC", nfc) == unicodedata.normalize("NFC", nfd)
