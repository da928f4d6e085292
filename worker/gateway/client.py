"""The FIBO client: one pooled session per process, three calls, only our errors out.

Transport failures are classified by whether the request may have reached the gateway:

=====================================================  ===============  ==================
failure                                                ``send``         balance / totals
=====================================================  ===============  ==================
connection refused, DNS failure, connect timeout,      NotSent          NotSent
proxy unreachable, TLS certificate refused
read timeout, connection reset / closed after the      AmbiguousError   TransientError
request went out, answer cut short, any other
transport failure
HTTP 3xx / 4xx / 5xx / 429, whatever the body         BadResponse      BadResponse
HTTP 2xx with a body that is not FIBO's XML, or over    UnreadableReply  BadResponse
the size cap (see :mod:`worker.gateway.parse`)          (ambiguous)
a FIBO result code other than 200 / 1                  error_for_code   error_for_code
an unusable ``FIBOSMS_API_URL`` (no scheme, bad host)  AccountError     AccountError
=====================================================  ===============  ==================

Retries here are only the ones that cannot send twice: ``send`` retries :class:`NotSent`,
the read-only calls retry any :class:`TransientError`. Everything else is the caller's.

The password travels in the query string (FIBO's API) and in the SOAP body. It never
reaches a message, a log line or a repr made here, and no error raised here chains to a
``requests`` exception (whose text embeds the URL): the request runs in a helper that
returns a verdict, and the error is raised afterwards, with no ``__cause__`` or
``__context__``, from a frame whose locals hold no password.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from urllib3.util.retry import Retry

from worker.errors import (
    AccountError,
    AmbiguousError,
    BadResponse,
    FiboError,
    NotSent,
    TransientError,
)
from worker.gateway.parse import (
    SendReceipt,
    Totals,
    parse_balance,
    parse_send,
    parse_totals,
    unreadable_send,
)
from worker.gateway.redact import quiet_urllib3
from worker.rules.phone import mask_phone
from worker.settings import Settings, redact_url

log = logging.getLogger("fibosms.gateway")

#: connections kept open to the gateway per process (a threaded worker uses one each)
POOL_SIZE = 64
#: bytes; an answer larger than this is not FIBO's
MAX_BODY_BYTES = 1 << 20
SOAP_ACTION = '"http://tempuri.org/GetTotalMt"'
USER_AGENT = "fibosms/0.1 (+requests)"

#: attempts at a send that never left, and at a balance / totals call
SEND_ATTEMPTS = 3
READ_ATTEMPTS = 3
#: seconds: first backoff, its cap, the random jitter added to each
BACKOFF_INITIAL_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 2.0
BACKOFF_JITTER_SECONDS = 0.25
#: seconds after the first attempt began, after which no new attempt starts
RETRY_DEADLINE_SECONDS = 10.0

_REQUEST_ERRORS = (
    requests.RequestException,
    u3.HTTPError,
    OSError,
)
_BAD_CONFIG = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)

T = TypeVar("T")


class Phase(Enum):
    """How far a failed request got."""

    #: it never left this host: repeating it cannot send twice
    NOT_SENT = "not sent"
    #: it may have reached the gateway
    MAYBE_SENT = "maybe sent"
    #: it could not even be built: the configuration is wrong
    BAD_CONFIG = "bad config"


@dataclass(frozen=True)
class TransportFailure:
    """A request that ended without an HTTP answer; ``reason`` is fixed text, never the URL."""

    phase: Phase
    reason: str


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    #: the body passed MAX_BODY_BYTES and was not read to its end
    oversize: bool = False


def classify_transport(
    exc: BaseException, *, read_timeout: float | None = None
) -> TransportFailure:
    """Where ``exc`` (from requests / urllib3 / the socket) left the request.

    Walks the whole chain (``__cause__``, ``__context__``, urllib3's ``reason`` and the
    exceptions requests wraps in ``args``): requests reports a refused connection and a
    reset after sending both as ``ConnectionError``. The adapter does no retries
    (``Retry(0, read=False)``), so urllib3 raises ``MaxRetryError`` only for failures
    while connecting; a read error is re-raised as it happened.
    """
    if isinstance(exc, _BAD_CONFIG):
        return TransportFailure(Phase.BAD_CONFIG, "FIBOSMS_API_URL is not a usable URL")
    chain = list(_chain(exc))
    if any(isinstance(e, requests.ReadTimeout | u3.ReadTimeoutError) for e in chain):
        after = f" within {read_timeout:g} s" if read_timeout is not None else ""
        return TransportFailure(Phase.MAYBE_SENT, f"no answer{after} (read timeout)")
    for e in chain:
        if isinstance(e, requests.ConnectTimeout):
            return TransportFailure(Phase.NOT_SENT, "connect timeout")
        if isinstance(e, u3.MaxRetryError):
            reason = e.reason
            if isinstance(reason, u3.NameResolutionError):
                return TransportFailure(Phase.NOT_SENT, "DNS lookup of the gateway failed")
            if isinstance(reason, u3.NewConnectionError):
                return TransportFailure(Phase.NOT_SENT, "could not connect (refused)")
            if isinstance(reason, u3.ConnectTimeoutError):
                return TransportFailure(Phase.NOT_SENT, "connect timeout")
            if isinstance(reason, u3.ProxyError):
                return TransportFailure(Phase.NOT_SENT, "could not connect through the proxy")
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        # refused during the handshake, before a byte of the request was written
        return TransportFailure(Phase.NOT_SENT, "the gateway's TLS certificate was refused")
    if any(isinstance(e, ConnectionRefusedError | socket.gaierror) for e in chain):
        return TransportFailure(Phase.NOT_SENT, "could not connect")
    if any(isinstance(e, requests.exceptions.ContentDecodingError) for e in chain):
        return TransportFailure(Phase.MAYBE_SENT, "the answer could not be decoded")
    if any(isinstance(e, requests.exceptions.ChunkedEncodingError) for e in chain):
        return TransportFailure(Phase.MAYBE_SENT, "the answer was cut short")
    if any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in chain):
        return TransportFailure(Phase.MAYBE_SENT, "connection reset after the request was sent")
    if any(isinstance(e, u3.ProtocolError) for e in chain):
        return TransportFailure(Phase.MAYBE_SENT, "connection closed after the request was sent")
    # unknown: the only safe assumption for a send is that it may have gone out
    return TransportFailure(Phase.MAYBE_SENT, f"transport failure ({type(exc).__name__})")


def _chain(exc: BaseException, limit: int = 32) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack and len(seen) < limit:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        stack.extend(x for x in linked if isinstance(x, BaseException))


class FiboClient:
    """FIBO's SendMaskedSMS, GetClientBalance and GetTotalMt over one pooled session.

    Build one per process after the fork (see :func:`get_client`); building connects to
    nothing. Timeouts come from the settings, in seconds.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        send_attempts: int = SEND_ATTEMPTS,
        read_attempts: int = READ_ATTEMPTS,
        backoff_initial_seconds: float = BACKOFF_INITIAL_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
        backoff_jitter_seconds: float = BACKOFF_JITTER_SECONDS,
        retry_deadline_seconds: float = RETRY_DEADLINE_SECONDS,
    ) -> None:
        self._settings = settings
        self._base = settings.api_url.rstrip("/")
        self._timeout = (settings.connect_timeout_seconds, settings.read_timeout_seconds)
        # urllib3 logs every request line, query string and password included, at DEBUG
        quiet_urllib3()
        self._session = _build_session()
        # initial·2^(n-1) s, capped, plus 0…jitter s; spelled out because the arguments of
        # tenacity's own wait_exponential_jitter differ between tenacity 8 and 9
        wait = wait_exponential(
            multiplier=backoff_initial_seconds, max=backoff_max_seconds
        ) + wait_random(0, backoff_jitter_seconds)
        deadline = stop_after_delay(retry_deadline_seconds)
        self._send_retry = Retrying(
            stop=stop_after_attempt(send_attempts) | deadline,
            wait=wait,
            retry=retry_if_exception_type(NotSent),
            before_sleep=_log_retry,
            reraise=True,
        )
        self._read_retry = Retrying(
            stop=stop_after_attempt(read_attempts) | deadline,
            wait=wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=_log_retry,
            reraise=True,
        )

    @property
    def settings(self) -> Settings:
        return self._settings

    def __repr__(self) -> str:
        return (
            f"FiboClient(api_url={redact_url(self._settings.api_url)!r}, "
            f"client_no={self._settings.client_no!r})"
        )

    def __enter__(self) -> FiboClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    # -- the three calls -----------------------------------------------------------------

    def send(
        self,
        phone: str,
        text: str,
        *,
        sender: str | None = None,
        service_type: int = 0,
        sms_guid: str = "0",
    ) -> SendReceipt:
        """Hand one SMS to the gateway (SendMaskedSMS); the receipt means *accepted*.

        ``sender`` defaults to the settings' brand name; ``service_type`` 0 is plain text,
        1 Unicode. Retried here only while the request has not left (:class:`NotSent`).
        """
        params = {
            "senderName": sender if sender is not None else (self._settings.sender_name or ""),
            "phoneNumber": phone,
            "smsMessage": text,
            "smsGUID": sms_guid,
            "serviceType": str(service_type),
        }
        attempts = self._send_retry.copy()
        receipt: SendReceipt = attempts(
            self._call, "send", mask_phone(phone), parse_send, params=params
        )
        return receipt

    def balance(self) -> Decimal:
        """What is left: messages or VND, whichever the account counts (GetClientBalance)."""
        attempts = self._read_retry.copy()
        balance: Decimal = attempts(
            self._call, "balance", None, parse_balance, params={"serviceType": "1"}
        )
        return balance

    def totals(self) -> Totals:
        """Today's counters, the provider's day (UTC+7) (GetTotalMt, SOAP 1.1)."""
        attempts = self._read_retry.copy()
        totals: Totals = attempts(self._call, "totals", None, parse_totals, params=None)
        return totals

    # -- one attempt ---------------------------------------------------------------------

    def _call(
        self,
        op: str,
        masked_phone: str | None,
        parse: Callable[[bytes, int], T],
        *,
        params: dict[str, str] | None,
    ) -> T:
        """One attempt: request, classify, parse, log one line. Raises only FiboError."""
        started = time.monotonic()
        outcome = self._post_totals() if op == "totals" else self._get(op, params or {})
        status: int | None = None
        if isinstance(outcome, TransportFailure):
            error = self._transport_error(op, outcome)
        elif outcome.oversize and 200 <= outcome.status < 300:
            status = outcome.status
            meaning = f"an answer over {MAX_BODY_BYTES} bytes"
            # a send's 2xx, however unreadable, means the gateway processed the request
            error = (
                unreadable_send(meaning, status)
                if op == "send"
                else BadResponse(meaning, http_status=status)
            )
        else:
            status = outcome.status
            try:
                result = parse(outcome.body, outcome.status)
            except FiboError as exc:
                error = exc
            else:
                self._log(op, masked_phone, started, result, None, status)
                return result
        self._log(op, masked_phone, started, None, error, status)
        # raised here, outside any except block: no __context__ to carry a URL along
        raise error

    def _transport_error(self, op: str, failure: TransportFailure) -> FiboError:
        if failure.phase is Phase.BAD_CONFIG:
            return AccountError(failure.reason)
        if failure.phase is Phase.NOT_SENT:
            return NotSent(failure.reason)
        if op == "send":
            return AmbiguousError(failure.reason)
        return TransientError(failure.reason)

    # The two helpers below hold the password in their locals. They return a verdict
    # instead of raising, so no traceback of ours passes through their frames.

    def _get(self, op: str, params: dict[str, str]) -> _Answer | TransportFailure:
        path = self._settings.send_path if op == "send" else self._settings.balance_path
        query = {
            "clientNo": self._settings.client_no,
            "clientPass": self._settings.client_pass,
            **params,
        }
        return self._exchange("GET", path, params=query)

    def _post_totals(self) -> _Answer | TransportFailure:
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            "<soap:Body>"
            '<GetTotalMt xmlns="http://tempuri.org/">'
            f"<Username>{escape(self._settings.client_no)}</Username>"
            f"<Password>{escape(self._settings.client_pass)}</Password>"
            "</GetTotalMt>"
            "</soap:Body>"
            "</soap:Envelope>"
        )
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}
        return self._exchange(
            "POST", self._settings.totals_path, data=body.encode("utf-8"), headers=headers
        )

    def _exchange(self, method: str, path: str, **kwargs: Any) -> _Answer | TransportFailure:
        """One HTTP exchange, the body read in full (up to :data:`MAX_BODY_BYTES`)."""
        try:
            # no redirects: one would carry the query string (the password) elsewhere
            with self._session.request(
                method,
                self._base + path,
                timeout=self._timeout,
                verify=True,
                allow_redirects=False,
                stream=True,
                **kwargs,
            ) as response:
                body = _read_capped(response)
                status = response.status_code
        except _REQUEST_ERRORS as exc:
            return classify_transport(exc, read_timeout=self._settings.read_timeout_seconds)
        if body is None:
            return _Answer(status=status, body=b"", oversize=True)
        return _Answer(status=status, body=body)

    def _log(
        self,
        op: str,
        masked_phone: str | None,
        started: float,
        result: object,
        error: FiboError | None,
        status: int | None,
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        code = error.code if error is not None else getattr(result, "code", None)
        outcome = type(error).__name__ if error is not None else "ok"
        log.info(
            "fibo %s phone=%s outcome=%s code=%s http=%s ms=%.0f",
            op,
            masked_phone or "-",
            outcome,
            code if code is not None else "-",
            status if status is not None else "-",
            ms,
            extra={
                "fibo_op": op,
                "fibo_phone": masked_phone,
                "fibo_outcome": outcome,
                "fibo_code": code,
                "fibo_http_status": status,
                "fibo_ms": round(ms),
            },
        )


def _read_capped(response: requests.Response) -> bytes | None:
    """The whole body, or None once it passes :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _build_session() -> requests.Session:
    session = requests.Session()
    # pooled keep-alive connections; no retries in urllib3 (retrying is decided here, and
    # read=False keeps a read error from being turned into MaxRetryError)
    adapter = HTTPAdapter(
        pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=Retry(total=0, read=False)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = True  # never turned off: the password is in every request
    session.headers["User-Agent"] = USER_AGENT
    return session


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    sleep = state.next_action.sleep if state.next_action is not None else 0.0
    log.info(
        "fibo %s retry %d in %.2f s after %s",
        state.args[0] if state.args else "?",
        state.attempt_number,
        sleep,
        type(exc).__name__ if exc is not None else "?",
    )


# -- one client per process ----------------------------------------------------------------

_lock = threading.Lock()
_client: FiboClient | None = None
_client_pid: int | None = None


def get_client(settings: Settings) -> FiboClient:
    """This process's client for ``settings``, built on first use.

    Rebuilt after a fork (a Celery prefork child must not share its parent's sockets)
    and when called with different settings.
    """
    global _client, _client_pid
    with _lock:
        pid = os.getpid()
        if _client is None or _client_pid != pid or _client.settings != settings:
            if _client is not None and _client_pid == pid:
                _client.close()
            # a parent's client is dropped, not closed: its sockets are the parent's
            _client, _client_pid = FiboClient(settings), pid
        return _client


def _reset_after_fork() -> None:
    global _lock
    # another thread may have held the lock at the fork; the child starts afresh
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
