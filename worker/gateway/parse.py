"""FIBO's answers, read: pure functions from (body bytes, HTTP status) to a value or an error.

Shapes accepted (``docs/api.md``, "Response shapes"):

* the escaped ASMX form, ``<string xmlns="http://tempuri.org/">&lt;SMS&gt;…`` — its text is
  decoded and parsed a second time;
* the literal form the provider's document prints, ``<string><SMS><Code>200</Code>…``, or a
  bare ``<SMS>`` root;
* a bare value inside ``<string>`` (a balance, a ``a|b|c`` total, or a result code);
* for GetTotalMt, the SOAP 1.1 envelope around ``<GetTotalMtResult>``;

with or without a UTF-8 BOM, the XML declaration and any namespace, with whitespace
around the document and inside elements, and with extra elements anywhere.

What is raised (only :mod:`worker.errors` classes, never anything else):

* a status other than 2xx, checked before the body → :class:`BadResponse` carrying it.
  5xx and 429 are the usual transient answers; a 3xx means a misconfigured URL (the client
  does not follow redirects: the password is in the query string) and any other 4xx comes
  as often from a proxy or firewall as from the gateway, so they are treated the same way;
  a lasting misconfiguration shows as ``HTTP 404`` on every dead-lettered message;
* a body that is not FIBO's XML (empty, not UTF-8, not well-formed, HTML, a DTD or an
  entity — refused before expansion, so a "billion laughs" costs nothing) → BadResponse
  for the balance and totals reads, which are safe to repeat; for a send with a 2xx status
  → :class:`~worker.errors.UnreadableReply`, an ambiguous outcome: the gateway took the
  request and answered, so the message may have been accepted (:func:`unreadable_send`);
* a result code other than 200 or 1 → :func:`worker.errors.error_for_code`.

No message built here quotes the body: a proxy page may echo the request URL, and with it
the password.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # only for the Element type and ParseError
from dataclasses import dataclass
from decimal import Decimal

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from worker.codes import SUCCESS_CODES
from worker.errors import BadResponse, FiboError, UnreadableReply, error_for_code

_CODE = re.compile(r"-?[0-9]{1,9}")
# ASCII digits only: int() and Decimal() would also take "٣" or "1_000"
_AMOUNT = re.compile(r"-?[0-9]{1,18}(?:\.[0-9]{1,6})?")
_HTML = re.compile(r"(?:<\?xml[^>]*>\s*)?<(?:!doctype\s+html|html[\s>])", re.IGNORECASE)
_TOTALS = re.compile(r"([0-9]{1,12})\s*\|\s*([0-9]{1,12})\s*\|\s*([0-9]{1,12})")


@dataclass(frozen=True)
class SendReceipt:
    """SendMaskedSMS accepted the message (``code`` 200 or 1): accepted, not yet delivered."""

    code: int
    message: str


@dataclass(frozen=True)
class Totals:
    """Today's GetTotalMt counters, in messages; "today" is the provider's day (UTC+7)."""

    success: int
    failed: int
    pending: int


def parse_send(body: bytes, http_status: int = 200) -> SendReceipt:
    """The receipt in a SendMaskedSMS answer, or the error its code stands for.

    A 2xx answer whose body cannot be read raises :class:`UnreadableReply` (ambiguous),
    any other status :class:`BadResponse` (transient), whatever the body.
    """
    unreadable: BadResponse | None = None
    try:
        return _read_send(body, http_status)
    except BadResponse as exc:
        unreadable = exc
    # raised outside the except block: no __context__ to carry the body along
    raise unreadable_send(unreadable.meaning, http_status)


def unreadable_send(meaning: str, http_status: int) -> FiboError:
    """What a send answer we cannot read stands for: ambiguous after a 2xx, else transient.

    A 2xx means the gateway received the request and answered it; a body we cannot read
    (empty, HTML, cut, over the size cap) does not say it refused the message.
    """
    if 200 <= http_status < 300:
        return UnreadableReply(meaning, http_status=http_status)
    return BadResponse(meaning, http_status=http_status)


def _read_send(body: bytes, http_status: int) -> SendReceipt:
    root = _document(body, http_status)
    code = _code_element(root, http_status)
    if code is None:
        # a bare <string>N</string>: nothing but a result code
        code = _bare_code(root)
    if code is None:
        raise BadResponse("the answer carries no result code", http_status=http_status)
    _raise_unless_success(code, http_status)
    return SendReceipt(code=code, message=_text(_find(root, "message")))


def parse_balance(body: bytes, http_status: int = 200) -> Decimal:
    """What is left on the account: messages or VND, whichever the account counts.

    A :class:`~decimal.Decimal` because a money-based account may show a fraction and a
    float would round it; an integral balance converts losslessly with ``int()``.
    """
    root = _document(body, http_status)
    code = _code_element(root, http_status)
    if code is not None:
        _raise_unless_success(code, http_status)
    element = _find(root, "accountbalance")
    if element is not None:
        raw = _text(element)
    elif code is None and _is_bare_string(root):
        # some clients see only the number: <string>1641060</string>
        raw = _text(root)
    else:
        raise BadResponse("the answer carries no balance", http_status=http_status)
    if not _AMOUNT.fullmatch(raw):
        raise BadResponse("the balance is not a number", http_status=http_status)
    return Decimal(raw)


def parse_totals(body: bytes, http_status: int = 200) -> Totals:
    """Today's counters from GetTotalMt's ``success|failed|pending``.

    A bare integer in their place is a FIBO result code (the sandbox answers ``3`` for
    bad credentials) and raises what that code stands for.
    """
    root = _document(body, http_status)
    element = _find(root, "gettotalmtresult")
    if element is not None:
        raw = _text(element)
    elif _is_bare_string(root):
        raw = _text(root)
    else:
        code = _code_element(root, http_status)
        if code is not None:
            _raise_unless_success(code, http_status)
        elif _find(root, "fault") is not None:
            raise BadResponse("a SOAP fault", http_status=http_status)
        raise BadResponse("the answer carries no counters", http_status=http_status)
    match = _TOTALS.fullmatch(raw)
    if match:
        success, failed, pending = (int(g) for g in match.groups())
        return Totals(success=success, failed=failed, pending=pending)
    if _CODE.fullmatch(raw):
        _raise_unless_success(int(raw), http_status)
        raise BadResponse("a success code but no counters", http_status=http_status)
    raise BadResponse("the counters are not 'success|failed|pending'", http_status=http_status)


def check_status(http_status: int) -> None:
    """Raise :class:`BadResponse` for any status but 2xx (see the module docstring)."""
    if 200 <= http_status < 300:
        return
    if http_status == 429:
        meaning = "the gateway is rate-limiting us"
    elif http_status >= 500:
        meaning = "the gateway or a proxy in front of it failed"
    elif 300 <= http_status < 400:
        meaning = "a redirect (check FIBOSMS_API_URL: http or https, host, path)"
    else:
        meaning = "the gateway or a proxy refused the request"
    raise BadResponse(meaning, http_status=http_status)


def _document(body: bytes, http_status: int) -> ET.Element:
    """The element holding FIBO's answer, the escaped ASMX text already parsed again."""
    check_status(http_status)
    # Errors are raised after the try blocks, not inside them, so that they carry no
    # __context__: a UnicodeDecodeError holds the whole body, which may echo the URL.
    try:
        # utf-8-sig drops a BOM; the declaration's encoding is ignored on purpose: the
        # gateway answers in UTF-8, and a mislabelled body must not turn into mojibake
        text: str | None = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise BadResponse("the body is not UTF-8", http_status=http_status)
    root = _xml(text, http_status)
    if _is_bare_string(root):
        inner = _text(root)
        if inner.startswith("<"):
            # the ASMX form: the inner document arrives as escaped text. One level only.
            root = _xml(inner, http_status)
    return root


def _xml(text: str, http_status: int) -> ET.Element:
    text = text.strip().lstrip("\ufeff").lstrip()
    if not text:
        raise BadResponse("the body is empty", http_status=http_status)
    if _HTML.match(text):
        raise BadResponse("an HTML page, not FIBO's XML", http_status=http_status)
    root: ET.Element | None = None
    try:
        # forbid_dtd stops a "billion laughs" or an external entity at the DOCTYPE,
        # before anything is expanded or fetched
        root = SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        problem = ""
    except DefusedXmlException:
        problem = "XML with a DTD or entities (refused)"
    except (ET.ParseError, ValueError, RecursionError):
        problem = "the body is not well-formed XML"
    if root is None:
        raise BadResponse(problem, http_status=http_status)
    if _local(root.tag) == "html":
        raise BadResponse("an HTML page, not FIBO's XML", http_status=http_status)
    return root


def _code_element(root: ET.Element, http_status: int) -> int | None:
    """The ``<Code>`` value, or None if there is no ``<Code>``."""
    element = _find(root, "code")
    if element is None:
        return None
    raw = _text(element)
    if not _CODE.fullmatch(raw):
        raise BadResponse("the result code is not a number", http_status=http_status)
    return int(raw)


def _bare_code(root: ET.Element) -> int | None:
    raw = _text(root)
    return int(raw) if _is_bare_string(root) and _CODE.fullmatch(raw) else None


def _raise_unless_success(code: int, http_status: int) -> None:
    if code not in SUCCESS_CODES:
        raise error_for_code(code, http_status=http_status)


def _find(root: ET.Element, name: str) -> ET.Element | None:
    """The first element (root included) whose local name is ``name``, any case, any namespace."""
    for element in root.iter():
        if isinstance(element.tag, str) and _local(element.tag) == name:
            return element
    return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def _is_bare_string(element: ET.Element) -> bool:
    """A ``<string>`` with text and no child elements (ASMX's wrapper around a plain value)."""
    return _local(element.tag) == "string" and len(element) == 0


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""
