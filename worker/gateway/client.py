"""The FIBO client: pooled connections per process, three calls, only our errors out.

Transport failures are classified by whether the request may have reached the gateway:

=====================================================  ===============  ==================
failure                                                ``send``         balance / totals
=====================================================  ===============  ==================
connection refused, DNS failure, connect timeout,      NotSent          NotSent
proxy unreachable, TLS certificate refused, any
failure before a request began on the connection
(a TLS handshake timing out, which urllib3 calls a
read timeout)
read timeout, connection reset / closed after the      AmbiguousError   TransientError
request went out, answer cut short, the call's
deadline passed after the request went out, any other
transport failure
the call's deadline passed before the request left     NotSent          NotSent
HTTP 3xx / 4xx / 5xx / 429, whatever the body         BadResponse      BadResponse
HTTP 2xx with a body that is not FIBO's XML, or over    UnreadableReply  BadResponse
the size cap (see :mod:`worker.gateway.parse`)          (ambiguous)
a FIBO result code other than 200 / 1                  error_for_code   error_for_code
an unusable ``FIBOSMS_API_URL`` (no scheme, bad host)  AccountError     AccountError
=====================================================  ===============  ==================

Retries here are only the ones that cannot send twice: ``send`` retries :class:`NotSent`,
the read-only calls retry any :class:`TransientError`. Everything else is the caller's.

Sends go out over the client's own non-blocking keep-alive connections
(:mod:`worker.gateway.burst`, one thread driving many calls; :meth:`FiboClient.send` is a
burst of one), unless a proxy is configured for the gateway; the balance and totals calls,
and sends through a proxy, go through requests. Both classify failures by the table above
and conclude every attempt the same way (:meth:`FiboClient._conclude`).

Each call, its retries included, ends within ``FIBOSMS_CALL_DEADLINE_SECONDS``. Through
requests, every attempt's connect and read timeouts are capped by the time left, the body is
read streamed and capped at :data:`MAX_BODY_BYTES`, and a watchdog cuts the socket of an
answer still trickling in at the deadline (:mod:`worker.gateway.deadline`); a burst keeps
the same timers itself.

The password travels in the query string (FIBO's API) and in the SOAP body. It never
reaches a message, a log line or a repr made here, and no error raised here chains to a
``requests`` exception (whose text embeds the URL): the request runs in a helper that
returns a verdict, and the error is raised afterwards, with no ``__cause__`` or
``__context__``, from a frame whose locals hold no password.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import requests
import urllib3.exceptions as u3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)
from tenacity.wait import wait_base

from worker.errors import (
    AccountError,
    AmbiguousError,
    BadResponse,
    FiboError,
    NotSent,
    TransientError,
)
from worker.gateway.burst import Burst, Pool, Retries, Route, Timeouts
from worker.gateway.deadline import StopAt, WaitWithin, watch
from worker.gateway.parse import (
    SendReceipt,
    Totals,
    parse_balance,
    parse_send,
    parse_totals,
    unreadable_send,
)
from worker.gateway.redact import quiet_urllib3
from worker.gateway.transport import (
    MAX_BODY_BYTES,
    Answer,
    Phase,
    Preparer,
    TransportFailure,
    build_session,
    classify_transport,
    cut_verdict,
    read_capped,
    settle,
)
from worker.rules.phone import mask_phone
from worker.settings import Settings, redact_url

log = logging.getLogger("fibosms.gateway")

SOAP_ACTION = '"http://tempuri.org/GetTotalMt"'

#: idle connections of the bursts kept per process: each of a worker's threads may hold
#: FIBOSMS_BATCH_CONCURRENCY of them in flight, and closing what one wave gave back only for
#: the next to open it again costs connects and a TIME_WAIT socket each
BURST_POOL_SIZE = 512

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

T = TypeVar("T")


class FiboClient:
    """FIBO's SendMaskedSMS, GetClientBalance and GetTotalMt over one pooled session.

    Build one per process after the fork (``fibosms.celeryapp.resources`` does); building
    connects to nothing. Timeouts come from the settings, in seconds.
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
        # urllib3 logs every request line, query string and password included, at DEBUG
        quiet_urllib3()
        self._session = build_session(self._base)
        self._prepare = Preparer(self._session)
        # sends go out over non-blocking connections of their own, unless a proxy (which
        # only requests speaks here) stands in the way
        self._route = self._send_route()
        self._pool = Pool(BURST_POOL_SIZE)
        wait = Backoff(backoff_initial_seconds, backoff_max_seconds, backoff_jitter_seconds)
        self._burst_timeouts = Timeouts(
            connect=settings.connect_timeout_seconds,
            read=settings.read_timeout_seconds,
            deadline=settings.call_deadline_seconds,
        )
        self._burst_retries = Retries(
            attempts=send_attempts,
            within=retry_deadline_seconds,
            backoff=wait.seconds,
            announce=_announce_retry,
        )
        deadline = stop_after_delay(retry_deadline_seconds)
        self._wait = wait
        self._send_stop = stop_after_attempt(send_attempts) | deadline
        self._read_stop = stop_after_attempt(read_attempts) | deadline
        self._send_retry = Retrying(
            stop=self._send_stop,
            wait=wait,
            retry=retry_if_exception_type(NotSent),
            before_sleep=_log_retry,
            reraise=True,
        )
        self._read_retry = Retrying(
            stop=self._read_stop,
            wait=wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=_log_retry,
            reraise=True,
        )

    def _send_route(self) -> Route | None:
        try:
            prepared = self._prepare("GET", self._base + self._settings.send_path)
        except (requests.RequestException, ValueError):
            return None  # an unusable URL: the requests path reports it, call by call
        return Route.of(
            prepared,
            proxies=self._session.proxies,
            verify=self._session.verify,
            credentials={
                "clientNo": self._settings.client_no,
                "clientPass": self._settings.client_pass,
            },
            sender=self._settings.sender_name or "",
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
        self._pool.close()

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
        masked = mask_phone(phone)
        burst = self.burst(bounded=False)
        if burst is not None:
            with burst:
                burst.start(
                    None, phone, text, sender=sender, service_type=service_type,
                    sms_guid=sms_guid, masked_phone=masked,
                )
                ((_, outcome),) = burst.wait()
            if isinstance(outcome, FiboError):
                raise outcome
            return outcome
        params = {
            "senderName": sender if sender is not None else (self._settings.sender_name or ""),
            "phoneNumber": phone,
            "smsMessage": text,
            "smsGUID": sms_guid,
            "serviceType": str(service_type),
        }
        deadline = self._deadline()
        attempts = self._send_retry.copy(
            stop=self._send_stop | StopAt(deadline), wait=WaitWithin(self._wait, deadline)
        )
        receipt: SendReceipt = attempts(
            self._call, "send", masked, parse_send, params=params, deadline=deadline
        )
        return receipt

    def burst(self, *, bounded: bool = True) -> Burst | None:
        """Sends driven together by the calling thread (:mod:`worker.gateway.burst`), or
        None when a proxy is configured and only :meth:`send` can reach the gateway.

        ``bounded``: at most ``FIBOSMS_BATCH_CONCURRENCY`` calls in flight (ask
        :meth:`Burst.room` before each start). Close it when done.
        """
        if self._route is None:
            return None
        return Burst(
            self._route,
            self._pool,
            timeouts=self._burst_timeouts,
            retries=self._burst_retries,
            conclude=self._conclude_send,
            limit=self._settings.batch_concurrency if bounded else None,
        )

    def _conclude_send(
        self, op: str, masked_phone: str, started: float, outcome: Answer | TransportFailure
    ) -> SendReceipt | FiboError:
        return self._conclude(op, masked_phone, started, outcome, parse_send)

    def balance(self) -> Decimal:
        """What is left: messages or VND, whichever the account counts (GetClientBalance)."""
        deadline = self._deadline()
        balance: Decimal = self._reads(deadline)(
            self._call, "balance", None, parse_balance, params={"serviceType": "1"},
            deadline=deadline,
        )
        return balance

    def totals(self) -> Totals:
        """Today's counters, the provider's day (UTC+7) (GetTotalMt, SOAP 1.1)."""
        deadline = self._deadline()
        totals: Totals = self._reads(deadline)(
            self._call, "totals", None, parse_totals, params=None, deadline=deadline
        )
        return totals

    def _deadline(self) -> float:
        """The :func:`time.monotonic` instant by which this call, retries included, ends."""
        return time.monotonic() + self._settings.call_deadline_seconds

    def _reads(self, deadline: float) -> Retrying:
        return self._read_retry.copy(
            stop=self._read_stop | StopAt(deadline), wait=WaitWithin(self._wait, deadline)
        )

    # -- one attempt ---------------------------------------------------------------------

    def _call(
        self,
        op: str,
        masked_phone: str | None,
        parse: Callable[[bytes, int], T],
        *,
        params: dict[str, str] | None,
        deadline: float,
    ) -> T:
        """One attempt: request, classify, parse, log one line. Raises only FiboError."""
        started = time.monotonic()
        outcome = (
            self._post_totals(deadline)
            if op == "totals"
            else self._get(op, params or {}, deadline)
        )
        result = self._conclude(op, masked_phone, started, outcome, parse)
        if isinstance(result, FiboError):
            # raised here, outside any except block: no __context__ to carry a URL along
            raise result
        return result

    def _conclude(
        self,
        op: str,
        masked_phone: str | None,
        started: float,
        outcome: Answer | TransportFailure,
        parse: Callable[[bytes, int], T],
    ) -> T | FiboError:
        """What one attempt's transport outcome means: the parsed result or the error;
        logs the attempt's line. Shared by the requests path and the bursts."""
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
        return error

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

    def _get(
        self, op: str, params: dict[str, str], deadline: float
    ) -> Answer | TransportFailure:
        path = self._settings.send_path if op == "send" else self._settings.balance_path
        query = {
            "clientNo": self._settings.client_no,
            "clientPass": self._settings.client_pass,
            **params,
        }
        return self._exchange("GET", path, deadline, params=query)

    def _post_totals(self, deadline: float) -> Answer | TransportFailure:
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
            "POST", self._settings.totals_path, deadline, data=body.encode("utf-8"),
            headers=headers,
        )

    def _exchange(
        self, method: str, path: str, deadline: float, **kwargs: Any
    ) -> Answer | TransportFailure:
        """One HTTP exchange, the body read in full (up to :data:`MAX_BODY_BYTES`), all of it
        by ``deadline`` (a :func:`time.monotonic` instant)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return cut_verdict(False, True, None, self._settings.call_deadline_seconds)
        timeout = (
            min(self._settings.connect_timeout_seconds, remaining),
            min(self._settings.read_timeout_seconds, remaining),
        )
        failure: TransportFailure | None = None
        body: bytes | None = b""
        status = 0
        with watch(deadline) as exchange:
            try:
                # no redirects: one would carry the query string (the password) elsewhere
                request = self._prepare(method, self._base + path, **kwargs)
                with self._session.send(
                    request, timeout=timeout, allow_redirects=False, stream=True
                ) as response:
                    body = read_capped(response)
                    status = response.status_code
            except _REQUEST_ERRORS as exc:
                failure = classify_transport(exc, read_timeout=self._settings.read_timeout_seconds)
            cut = exchange.finish()
        if cut:
            # whatever the socket said after the cut (EOF, a short body) is not the answer
            return cut_verdict(
                exchange.left, exchange.claimed, failure, self._settings.call_deadline_seconds
            )
        if failure is not None:
            return settle(failure, left=exchange.left, claimed=exchange.claimed)
        if body is None:
            return Answer(status=status, body=b"", oversize=True)
        return Answer(status=status, body=body)

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


class Backoff(wait_base):
    """initial·2^(n-1) seconds after attempt n, capped, plus 0…jitter seconds: for tenacity
    (the read calls, and sends through a proxy) and for the bursts alike. Spelled out
    because the arguments of tenacity's own ``wait_exponential_jitter`` differ between
    tenacity 8 and 9."""

    def __init__(self, initial: float, most: float, jitter: float) -> None:
        self.initial = initial
        self.most = most
        self.jitter = jitter

    def seconds(self, attempt: int) -> float:
        wait: float = min(self.initial * 2 ** (attempt - 1), self.most)
        return wait + random.uniform(0, self.jitter)  # noqa: S311 - jitter, not a secret

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.seconds(retry_state.attempt_number)


def _announce_retry(attempt: int, sleep: float) -> None:
    log.info("fibo %s retry %d in %.2f s after %s", "send", attempt, sleep, "NotSent")


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
