"""Whatever the wire brings, the parsers answer with a value or a FiboError, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from html import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.codes import SUCCESS_CODES
from worker.errors import FiboError
from worker.gateway import SendReceipt, Totals, parse_balance, parse_send, parse_totals

Parser = Callable[[bytes, int], object]
PARSERS: list[Parser] = [parse_send, parse_balance, parse_totals]

VALID = [
    b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
    + escape("<SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS>").encode()
    + b"</string>",
    b"<string><SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS></string>",
    b'<string xmlns="http://tempuri.org/">'
    + escape("<SMS><Code>200</Code><AccountBalance>1641060</AccountBalance></SMS>").encode()
    + b"</string>",
    b"<string>1641060</string>",
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
    b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<GetTotalMtResponse xmlns="http://tempuri.org/"><GetTotalMtResult>56|12|0'
    b"</GetTotalMtResult></GetTotalMtResponse></soap:Body></soap:Envelope>",
]

#: pieces of FIBO-shaped XML, so that random documents get past the XML parser often
FRAGMENTS = [
    '<?xml version="1.0" encoding="utf-8"?>', '<string xmlns="http://tempuri.org/">',
    "<string>", "</string>", "<SMS>", "</SMS>", "<Code>", "</Code>", "<Message>",
    "</Message>", "<AccountBalance>", "</AccountBalance>", "<GetTotalMtResult>",
    "</GetTotalMtResult>", "&lt;SMS&gt;", "&lt;Code&gt;", "&lt;/Code&gt;", "&lt;/SMS&gt;",
    "&lt;", "&gt;", "&amp;", "&#x0;", "&#65;", "&foo;", "<!DOCTYPE x>",
    "<![CDATA[<Code>1</Code>]]>",
    "<!-- c -->", "<?pi x?>", "200", "1", "3", "14", "-1", "1.5", "1e9", "56|12|0", "|", " ",
    "\n", "\ufeff", "é", "Đ", "\x00", "<html>", "<", ">", "/", '"', "=",
]  # fmt: skip

statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 404, 429, 500, 502, 503]),
    st.integers(min_value=-1, max_value=1000),
)


def assert_well_behaved(parse: Parser, body: bytes, status: int) -> None:
    try:
        result = parse(body, status)
    except FiboError:
        return
    # anything that came back must be a real success of the right type
    assert 200 <= status < 300
    if parse is parse_send:
        assert isinstance(result, SendReceipt)
        assert result.code in SUCCESS_CODES
    elif parse is parse_balance:
        assert isinstance(result, Decimal)
        assert result.is_finite()
    else:
        assert isinstance(result, Totals)
        assert min(result.success, result.failed, result.pending) >= 0


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid answer with a few random cuts, insertions, flips and splices."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["cut", "insert", "flip", "truncate", "splice"]))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "cut":
            del data[at : at + draw(st.integers(min_value=1, max_value=20))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            data[at:at] = draw(st.sampled_from(FRAGMENTS)).encode()
    return bytes(data)


fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(parse=st.sampled_from(PARSERS), body=st.binary(max_size=512), status=statuses)
def test_random_bytes_never_raise_anything_but_a_fibo_error(
    parse: Parser, body: bytes, status: int
) -> None:
    assert_well_behaved(parse, body, status)


@fuzz
@given(parse=st.sampled_from(PARSERS), body=mutated())
def test_mutated_valid_answers_never_raise_anything_but_a_fibo_error(
    parse: Parser, body: bytes
) -> None:
    assert_well_behaved(parse, body, 200)


@fuzz
@given(
    parse=st.sampled_from(PARSERS),
    pieces=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=30),
)
def test_fibo_shaped_nonsense_never_raises_anything_but_a_fibo_error(
    parse: Parser, pieces: list[str]
) -> None:
    body = "".join(pieces).encode("utf-8", "surrogatepass")
    assert_well_behaved(parse, body, 200)


@fuzz
@given(
    code=st.integers(min_value=-(10**9) + 1, max_value=10**9 - 1),
    message=st.text(max_size=40),
)
def test_any_code_is_a_receipt_or_a_fibo_error_carrying_it(code: int, message: str) -> None:
    inner = f"<SMS><Code>{code}</Code><Message>{escape(message)}</Message></SMS>"
    body = f'<string xmlns="http://tempuri.org/">{escape(inner)}</string>'.encode(
        "utf-8", "surrogatepass"
    )
    try:
        receipt = parse_send(body)
    except FiboError as exc:
        # a message with characters XML cannot carry makes the body unreadable instead
        assert exc.code in (code, None)
        assert code not in SUCCESS_CODES or exc.code is None
        return
    assert receipt.code == code
    assert code in SUCCESS_CODES
