"""The sandbox's answers drawn as FIBO draws them: ASMX ``<string>`` documents, the SOAP
GetTotalMt envelope and fault, and a reverse proxy's error page. Pure functions."""

from __future__ import annotations

from http import HTTPStatus
from xml.sax.saxutils import escape

from worker.codes import SUCCESS_CODES, lookup
from worker.sandbox.state import Reply

TEMPURI = "http://tempuri.org/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XML_TYPE = "text/xml; charset=utf-8"

_XML_DECL = '<?xml version="1.0" encoding="utf-8"?>\n'
_SOAP_OPEN = (
    f'{_XML_DECL}<soap:Envelope xmlns:soap="{SOAP_ENV}" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>'
)
_SOAP_CLOSE = "</soap:Body></soap:Envelope>"


def render_string(inner: str, *, literal: bool) -> str:
    """ASMX's ``<string>`` document: the inner XML escaped (as ASMX does) or literal."""
    if literal:
        return f"<string>{inner}</string>"
    return f'{_XML_DECL}<string xmlns="{TEMPURI}">{escape(inner)}</string>'


def render_sms(code: int, *, literal: bool = False) -> str:
    message = "Sending..." if code in SUCCESS_CODES else lookup(code).meaning
    inner = f"<SMS><Code>{code}</Code><Message>{escape(message)}</Message><Time></Time></SMS>"
    return render_string(inner, literal=literal)


def render_balance(balance: int, *, literal: bool = False) -> str:
    inner = f"<SMS><Code>200</Code><AccountBalance>{balance}</AccountBalance><Time></Time></SMS>"
    return render_string(inner, literal=literal)


def render_totals(result: str) -> str:
    return (f'{_SOAP_OPEN}<GetTotalMtResponse xmlns="{TEMPURI}"><GetTotalMtResult>'
            f"{escape(result)}</GetTotalMtResult></GetTotalMtResponse>{_SOAP_CLOSE}")


def render_fault(reason: str) -> str:
    return (f"{_SOAP_OPEN}<soap:Fault><faultcode>soap:Client</faultcode>"
            f"<faultstring>{escape(reason)}</faultstring><detail /></soap:Fault>{_SOAP_CLOSE}")


def render_error_page(status: int) -> str:
    """What a reverse proxy answers when the service behind it is down."""
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")


def render(reply: Reply) -> tuple[int, str, str]:
    """``(status, content type, body)`` for every reply but a drop."""
    if reply.kind == "http":
        return reply.status, "text/html", render_error_page(reply.status)
    if reply.kind == "raw":
        return reply.status, reply.content_type or XML_TYPE, reply.body or ""
    if reply.kind == "fault":
        return 500, XML_TYPE, render_fault(reply.body or "")
    if reply.kind == "totals":
        return 200, XML_TYPE, render_totals(reply.totals or "")
    if reply.kind == "balance" and reply.balance is not None:
        return 200, XML_TYPE, render_balance(reply.balance, literal=reply.literal)
    if reply.kind == "sms" and reply.code is not None:
        return 200, XML_TYPE, render_sms(reply.code, literal=reply.literal)
    raise ValueError(f"cannot render {reply!r}")
