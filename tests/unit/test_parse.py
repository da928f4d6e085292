"""FIBO's answers, every shape they come in, and everything that is not one of them."""

from __future__ import annotations

import time
from decimal import Decimal
from html import escape

import pytest

import worker.gateway
from worker.codes import CODES, SUCCESS_CODES, CodeClass
from worker.errors import (
    AccountError,
    AmbiguousError,
    BadResponse,
    FiboError,
    PermanentError,
    TransientError,
    UnreadableReply,
)
from worker.gateway import SendReceipt, Totals, parse_balance, parse_send, parse_totals
from worker.gateway.parse import unreadable_send

DECL = '<?xml version="1.0" encoding="utf-8"?>\n'
SENDING = "<SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS>"


def asmx(inner: str, *, decl: bool = True, ns: bool = True) -> bytes:
    """The real ASMX answer: the inner XML escaped as the text of ``<string>``."""
    xmlns = ' xmlns="http://tempuri.org/"' if ns else ""
    head = DECL if decl else ""
    return f"{head}<string{xmlns}>{escape(inner, quote=False)}</string>".encode()


def literal(inner: str, *, decl: bool = False, ns: bool = False) -> bytes:
    """The form the provider's document prints: the inner XML as elements."""
    xmlns = ' xmlns="http://tempuri.org/"' if ns else ""
    head = DECL if decl else ""
    return f"{head}<string{xmlns}>{inner}</string>".encode()


def sms(code: int | str, message: str = "", extra: str = "") -> str:
    return f"<SMS><Code>{code}</Code><Message>{message}</Message><Time></Time>{extra}</SMS>"


def soap(result: str) -> bytes:
    return (
        DECL + '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n'
        "  <soap:Body>\n"
        '    <GetTotalMtResponse xmlns="http://tempuri.org/">\n'
        f"      <GetTotalMtResult>{result}</GetTotalMtResult>\n"
        "    </GetTotalMtResponse>\n"
        "  </soap:Body>\n"
        "</soap:Envelope>\n"
    ).encode()


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<string>&lol9;</string>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE string [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    "<string><SMS><Code>200</Code><Message>&xxe;</Message></SMS></string>"
)
PARSERS = [parse_send, parse_balance, parse_totals]
#: the idempotent reads: an answer they cannot read is worth asking again
READ_PARSERS = [parse_balance, parse_totals]


def unreadable_error(parse: object) -> type[FiboError]:
    """A send answered 2xx has been processed by the gateway; a read is safe to repeat."""
    return UnreadableReply if parse is parse_send else BadResponse


# -- the public surface ------------------------------------------------------------------


def test_the_package_exports_exactly_its_public_surface() -> None:
    assert sorted(worker.gateway.__all__) == [
        "FiboClient",
        "SendReceipt",
        "Totals",
        "parse_balance",
        "parse_send",
        "parse_totals",
    ]
    for name in worker.gateway.__all__:
        assert getattr(worker.gateway, name) is not None


# -- SendMaskedSMS: the shapes a success comes in ------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(asmx(SENDING), id="escaped ASMX form"),
        pytest.param(asmx(SENDING, decl=False), id="escaped, no declaration"),
        pytest.param(asmx(SENDING, ns=False), id="escaped, no namespace"),
        pytest.param(asmx(DECL + SENDING), id="escaped, inner declaration too"),
        pytest.param(literal(SENDING), id="literal form of the provider's document"),
        pytest.param(literal(SENDING, decl=True, ns=True), id="literal, declaration, tempuri"),
        pytest.param(SENDING.encode(), id="bare SMS root"),
        pytest.param(b"\xef\xbb\xbf" + asmx(SENDING), id="UTF-8 BOM"),
        pytest.param(b"\xef\xbb\xbf" + literal(SENDING), id="BOM, literal form"),
        pytest.param(b"\r\n  \t" + asmx(SENDING) + b"\n\n  ", id="whitespace around"),
        pytest.param(
            asmx("\n <SMS>\n  <Code> 200 </Code>\n  <Message>  Sending...\n</Message>\n</SMS>"),
            id="whitespace inside elements",
        ),
        pytest.param(
            literal("<SMS><Code>\n200\n</Code><Message>Sending...</Message></SMS>"),
            id="newlines inside Code, literal form",
        ),
        pytest.param(
            asmx(sms(200, "Sending...", "<MsgId>abc</MsgId><Extra a='1'><x/></Extra>")),
            id="extra elements",
        ),
        pytest.param(
            literal("<Header>v2</Header>" + sms(200, "Sending...")), id="extra sibling element"
        ),
        pytest.param(
            literal(
                '<SMS xmlns="http://tempuri.org/"><Code>200</Code><Message>Sending...</Message></SMS>'
            ),
            id="namespaced SMS",
        ),
        pytest.param(
            literal("<sms><code>200</code><message>Sending...</message></sms>"),
            id="lower-case tags",
        ),
    ],
)
def test_a_success_in_any_accepted_shape_is_a_receipt(body: bytes) -> None:
    assert parse_send(body) == SendReceipt(code=200, message="Sending...")


def test_code_1_is_success_too() -> None:
    assert parse_send(asmx(sms(1, "OK"))) == SendReceipt(code=1, message="OK")


def test_a_success_without_a_message_element_has_an_empty_message() -> None:
    assert parse_send(literal("<SMS><Code>200</Code></SMS>")) == SendReceipt(200, "")


def test_a_bare_code_in_string_is_read_as_the_result_code() -> None:
    assert parse_send(b'<string xmlns="http://tempuri.org/">200</string>').code == 200
    with pytest.raises(TransientError) as info:
        parse_send(b"<string>2</string>")
    assert info.value.code == 2


def test_vietnamese_text_in_the_message_survives() -> None:
    receipt = parse_send(asmx(sms(200, "Đang gửi tin nhắn…")))
    assert receipt.message == "Đang gửi tin nhắn…"


# -- every code in the table -------------------------------------------------------------

_EXPECTED_CLASS: dict[CodeClass, type[FiboError]] = {
    CodeClass.TRANSIENT: TransientError,
    CodeClass.PERMANENT: PermanentError,
    CodeClass.ACCOUNT: AccountError,
}


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("shape", [asmx, literal], ids=["escaped", "literal"])
def test_every_code_in_the_table_maps_to_its_class(code: int, shape: object) -> None:
    body = shape(sms(code, "whatever the gateway says"))  # type: ignore[operator]
    row = CODES[code]
    if code in SUCCESS_CODES:
        assert parse_send(body) == SendReceipt(code, "whatever the gateway says")
        return
    with pytest.raises(FiboError) as info:
        parse_send(body)
    assert type(info.value) is _EXPECTED_CLASS[row.cls]
    assert info.value.code == code
    assert info.value.meaning == row.meaning
    assert info.value.meaning_vi == row.meaning_vi
    assert info.value.http_status == 200


def test_the_product_owners_codes_land_where_he_put_them() -> None:
    for code in (2, 13, 27):
        with pytest.raises(TransientError):
            parse_send(asmx(sms(code)))
    for code in (3, 14):
        with pytest.raises(AccountError):
            parse_send(asmx(sms(code)))
    for code in (7, 10):
        with pytest.raises(PermanentError) as info:
            parse_send(asmx(sms(code)))
        assert not isinstance(info.value, AccountError)


@pytest.mark.parametrize("code", [0, 32, 99, 500, -1, 123456789])
def test_an_unknown_code_is_permanent(code: int) -> None:
    with pytest.raises(PermanentError) as info:
        parse_send(asmx(sms(code)))
    assert type(info.value) is PermanentError
    assert info.value.code == code
    assert "unknown" in info.value.meaning


def test_the_status_given_is_carried_by_a_code_error() -> None:
    with pytest.raises(AccountError) as info:
        parse_send(asmx(sms(14)), http_status=201)
    assert info.value.http_status == 201


# -- what is not FIBO's XML ---------------------------------------------------------------

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>/SendMT/service.asmx/SendMaskedSMS?clientNo=CL1&amp;"
    b"clientPass=hunter2-secret</p></body></html>"
)
IIS_ERROR_PAGE = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 '
    b'Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html '
    b'xmlns="http://www.w3.org/1999/xhtml"><body>Server Error</body></html>'
)

NOT_FIBO = [
    pytest.param(b"", id="empty body"),
    pytest.param(b"   \r\n\t ", id="whitespace only"),
    pytest.param(b"\xef\xbb\xbf", id="a BOM alone"),
    pytest.param(HTML_PAGE, id="HTML error page"),
    pytest.param(IIS_ERROR_PAGE, id="XHTML page with a DOCTYPE"),
    pytest.param(b"<html><body>maintenance</body></html>", id="html without doctype"),
    pytest.param(asmx(SENDING)[:-20], id="truncated"),
    pytest.param(asmx(SENDING)[:60], id="truncated inside the escaped text"),
    pytest.param(asmx("<SMS><Code>200</Code><Message>Sen"), id="escaped text truncated"),
    pytest.param(literal(SENDING)[:30], id="truncated literal"),
    pytest.param(b"\x00\x01\x02\xff\xfe\x80garbage", id="garbage bytes"),
    pytest.param(b"\xff\xfe<\x00s\x00/\x00>\x00", id="UTF-16"),
    pytest.param(literal(sms(200, "caf\xe9")).replace(b"caf", b"caf\xe9"), id="latin-1 bytes"),
    pytest.param(b"Sending...", id="plain text"),
    pytest.param(b'{"Code": 200}', id="JSON"),
    pytest.param(b"<string></string>", id="empty string element"),
    pytest.param(b"<string>Sending...</string>", id="text without a code"),
    pytest.param(literal("<SMS><Message>Sending...</Message></SMS>"), id="SMS without Code"),
    pytest.param(literal("<SMS><Code>abc</Code></SMS>"), id="Code not a number"),
    pytest.param(literal("<SMS><Code></Code></SMS>"), id="Code empty"),
    pytest.param(literal("<SMS><Code>2 00</Code></SMS>"), id="Code with inner space"),
    pytest.param(literal("<SMS><Code>\u0662\u0660\u0660</Code></SMS>"), id="Code in Arabic digits"),
    pytest.param(literal("<SMS><Code>2_00</Code></SMS>"), id="Code with underscore"),
    pytest.param(literal("<SMS><Code>9999999999999999</Code></SMS>"), id="Code absurdly long"),
    pytest.param(b"<a><b></a>", id="mismatched tags"),
    pytest.param(b"<", id="a lone bracket"),
]


@pytest.mark.parametrize("body", NOT_FIBO)
@pytest.mark.parametrize("parse", READ_PARSERS, ids=lambda f: f.__name__)
def test_a_read_whose_body_is_not_fibos_xml_is_a_bad_response(parse: object, body: bytes) -> None:
    with pytest.raises(BadResponse) as info:
        parse(body)  # type: ignore[operator]
    assert info.value.code is None
    assert info.value.http_status == 200


@pytest.mark.parametrize("status", [200, 201, 204])
@pytest.mark.parametrize("body", NOT_FIBO)
def test_a_send_answered_2xx_with_an_unreadable_body_is_ambiguous(
    body: bytes, status: int
) -> None:
    # the gateway received the request and answered: the message may have been accepted
    with pytest.raises(UnreadableReply) as info:
        parse_send(body, status)
    assert isinstance(info.value, AmbiguousError)
    assert not isinstance(info.value, TransientError)
    assert info.value.cls is CodeClass.TRANSIENT  # the class AmbiguousError has always had
    assert info.value.code is None
    assert info.value.http_status == status


@pytest.mark.parametrize("status", [301, 404, 429, 500, 502, 503])
@pytest.mark.parametrize(
    "body",
    [HTML_PAGE, b"", b"\x00garbage", asmx(SENDING)[:60]],
    ids=["html", "empty", "garbage", "cut"],
)
def test_a_send_answered_non_2xx_with_an_unreadable_body_stays_transient(
    body: bytes, status: int
) -> None:
    # a proxy's error page: the request did not get through to be processed
    with pytest.raises(BadResponse) as info:
        parse_send(body, status)
    assert not isinstance(info.value, AmbiguousError)
    assert info.value.http_status == status


def test_unreadable_send_classifies_by_status_alone() -> None:
    assert type(unreadable_send("the body is empty", 200)) is UnreadableReply
    assert type(unreadable_send("the body is empty", 299)) is UnreadableReply
    assert type(unreadable_send("the body is empty", 502)) is BadResponse
    assert type(unreadable_send("the body is empty", 302)) is BadResponse
    assert unreadable_send("an answer over 1048576 bytes", 200).meaning == (
        "an answer over 1048576 bytes"
    )


def test_an_unreadable_send_still_reports_a_refusal_it_can_read() -> None:
    # a readable code is the gateway's word, not an unknown outcome
    with pytest.raises(PermanentError) as info:
        parse_send(asmx(sms(7)))
    assert not isinstance(info.value, AmbiguousError)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
def test_a_bad_response_never_quotes_the_body(parse: object) -> None:
    with pytest.raises(FiboError) as info:
        parse(HTML_PAGE)  # type: ignore[operator]
    assert type(info.value) is unreadable_error(parse)
    for text in (str(info.value), repr(info.value), info.value.meaning):
        assert "hunter2" not in text
        assert "clientPass" not in text


def test_errors_from_the_parser_carry_no_chained_exception() -> None:
    # a UnicodeDecodeError holds the whole body; a chained one would drag it into logs
    for body in (b"\xff\xfe", b"<a", BILLION_LAUGHS.encode(), asmx(sms(3))):
        with pytest.raises(FiboError) as info:
            parse_send(body)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None


# -- hostile XML -------------------------------------------------------------------------


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BILLION_LAUGHS.encode(), id="billion laughs"),
        pytest.param(EXTERNAL_ENTITY.encode(), id="external entity"),
        pytest.param(asmx(BILLION_LAUGHS), id="billion laughs inside the escaped text"),
        pytest.param(asmx(EXTERNAL_ENTITY), id="external entity inside the escaped text"),
        pytest.param(
            b'<!DOCTYPE string SYSTEM "http://127.0.0.1:9/evil.dtd"><string>1</string>',
            id="external DTD",
        ),
        pytest.param(
            b'<!DOCTYPE s [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x">%p;]><string>1</string>',
            id="parameter entity",
        ),
    ],
)
def test_hostile_xml_is_refused_fast(parse: object, body: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(unreadable_error(parse)) as info:
        parse(body)  # type: ignore[operator]
    assert time.monotonic() - started < 1.0
    assert "DTD" in info.value.meaning or "entit" in info.value.meaning


def test_deep_nesting_is_survived() -> None:
    body = b"<string>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</string>"
    with pytest.raises(UnreadableReply):
        parse_send(body)
    with pytest.raises(BadResponse):
        parse_balance(body)


# -- HTTP status, checked before the body ------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
def test_5xx_and_429_are_transient_whatever_the_body(parse: object, status: int) -> None:
    for body in (b"<html><body>Bad Gateway</body></html>", asmx(SENDING), b""):
        with pytest.raises(BadResponse) as info:
            parse(body, status)  # type: ignore[operator]
        assert isinstance(info.value, TransientError)
        assert info.value.http_status == status
        assert info.value.code is None
        assert str(status) in str(info.value)


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 405, 408])
def test_other_non_2xx_statuses_are_bad_responses(status: int) -> None:
    with pytest.raises(BadResponse) as info:
        parse_send(asmx(SENDING), status)
    assert info.value.http_status == status


def test_a_2xx_other_than_200_is_read_normally() -> None:
    assert parse_send(asmx(SENDING), 201).code == 200


# -- GetClientBalance --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            asmx(
                "<SMS><Code>200</Code><AccountBalance>1641060</AccountBalance><Time></Time></SMS>"
            ),
            Decimal(1641060),
            id="escaped",
        ),
        pytest.param(
            literal("<SMS><Code>200</Code><AccountBalance>1641060</AccountBalance></SMS>"),
            Decimal(1641060),
            id="literal",
        ),
        pytest.param(
            b"\xef\xbb\xbf"
            + asmx("<SMS>\n <Code> 1 </Code>\n <AccountBalance>\n 25 </AccountBalance></SMS>"),
            Decimal(25),
            id="BOM, whitespace, code 1",
        ),
        pytest.param(
            b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
            b"1641060</string>",
            Decimal(1641060),
            id="bare number in string",
        ),
        pytest.param(b"<string> 0 </string>", Decimal(0), id="bare zero"),
        pytest.param(
            asmx("<SMS><Code>200</Code><AccountBalance>1641060.50</AccountBalance></SMS>"),
            Decimal("1641060.50"),
            id="a decimal VND amount",
        ),
        pytest.param(b"<string>12.5</string>", Decimal("12.5"), id="bare decimal"),
        pytest.param(
            literal("<SMS><Code>200</Code><AccountBalance>-5000</AccountBalance></SMS>"),
            Decimal(-5000),
            id="overdrawn",
        ),
        pytest.param(
            literal("<SMS><AccountBalance>77</AccountBalance></SMS>"), Decimal(77), id="no Code"
        ),
    ],
)
def test_the_balance_in_any_accepted_shape(body: bytes, expected: Decimal) -> None:
    balance = parse_balance(body)
    assert isinstance(balance, Decimal)
    assert balance == expected


def test_a_large_vnd_balance_is_exact() -> None:
    body = literal("<SMS><Code>200</Code><AccountBalance>123456789012345.67</AccountBalance></SMS>")
    assert parse_balance(body) == Decimal("123456789012345.67")


@pytest.mark.parametrize("code", [3, 14, 4])
def test_a_refused_balance_call_raises_the_account_error(code: int) -> None:
    with pytest.raises(AccountError) as info:
        parse_balance(asmx(sms(code)))
    assert info.value.code == code


@pytest.mark.parametrize(
    "value", ["abc", "1,641,060", "1.641.060", "NaN", "Infinity", "1e9", "\u0663", "", "1_000"]
)
def test_a_balance_that_is_not_a_plain_number_is_a_bad_response(value: str) -> None:
    with pytest.raises(BadResponse):
        parse_balance(
            literal(f"<SMS><Code>200</Code><AccountBalance>{value}</AccountBalance></SMS>")
        )
    with pytest.raises(BadResponse):
        parse_balance(f"<string>{value}</string>".encode())


def test_a_success_without_a_balance_is_a_bad_response() -> None:
    with pytest.raises(BadResponse):
        parse_balance(asmx(SENDING))


# -- GetTotalMt --------------------------------------------------------------------------


def test_totals_from_a_realistic_soap_envelope() -> None:
    assert parse_totals(soap("56|12|0")) == Totals(success=56, failed=12, pending=0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(soap(" 505 | 6 | 0 "), Totals(505, 6, 0), id="spaces around the bars"),
        pytest.param(b"\xef\xbb\xbf" + soap("0|0|0"), Totals(0, 0, 0), id="BOM"),
        pytest.param(
            b"<Envelope><Body><GetTotalMtResponse><GetTotalMtResult>1|2|3</GetTotalMtResult>"
            b"</GetTotalMtResponse></Body></Envelope>",
            Totals(1, 2, 3),
            id="no namespaces",
        ),
        pytest.param(
            b'<string xmlns="http://tempuri.org/">7|8|9</string>', Totals(7, 8, 9), id="ASMX form"
        ),
    ],
)
def test_totals_in_any_accepted_shape(body: bytes, expected: Totals) -> None:
    assert parse_totals(body) == expected


@pytest.mark.parametrize(
    ("result", "kind"),
    [("3", AccountError), ("2", TransientError), ("7", PermanentError), ("99", PermanentError)],
)
def test_a_bare_integer_result_is_a_fibo_code(result: str, kind: type[FiboError]) -> None:
    with pytest.raises(kind) as info:
        parse_totals(soap(result))
    assert info.value.code == int(result)


@pytest.mark.parametrize("result", ["200", "1"])
def test_a_success_code_without_counters_is_a_bad_response(result: str) -> None:
    with pytest.raises(BadResponse):
        parse_totals(soap(result))


@pytest.mark.parametrize("result", ["", "1|2", "1|2|3|4", "a|b|c", "1|-2|3", "1;2;3", "x"])
def test_counters_not_in_three_fields_are_a_bad_response(result: str) -> None:
    with pytest.raises(BadResponse):
        parse_totals(soap(result))


SOAP_FAULT = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
    b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
    b"<faultcode>soap:Client</faultcode><faultstring>Server did not recognize the value of "
    b"HTTP Header SOAPAction.</faultstring><detail /></soap:Fault></soap:Body></soap:Envelope>"
)


def test_a_soap_fault_is_a_bad_response() -> None:
    with pytest.raises(BadResponse) as info:
        parse_totals(SOAP_FAULT)
    assert "fault" in info.value.meaning.lower()
    with pytest.raises(BadResponse) as info:
        parse_totals(SOAP_FAULT, 500)
    assert info.value.http_status == 500


def test_a_totals_answer_in_the_sms_form_raises_its_code() -> None:
    with pytest.raises(AccountError):
        parse_totals(asmx(sms(3)))
    with pytest.raises(BadResponse):
        parse_totals(asmx(SENDING))
