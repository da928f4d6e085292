"""The HTTP side of the client: the pooled session, the capped body, and where a failed
request got to (never left, may have reached the gateway, or unusable).

:func:`classify_transport` is pure classification of what requests / urllib3 / the socket
raised; the client turns the verdict into an error. A ``reason`` here is fixed text: never a
URL, so never the password.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlencode

import requests
import urllib3.exceptions as u3
from urllib3.util.retry import Retry

from worker.gateway.deadline import DeadlineAdapter

#: connections kept open to the gateway per process (a threaded worker uses one each)
POOL_SIZE = 64
#: bytes; an answer larger than this is not FIBO's (its answers are under 1 KiB)
MAX_BODY_BYTES = 64 * 1024
#: bytes asked of the socket per read of the body
CHUNK_BYTES = 16 * 1024
USER_AGENT = "fibosms/0.1 (+requests)"

_BAD_CONFIG = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)


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
class Answer:
    """An HTTP answer, read."""

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


def read_capped(response: requests.Response) -> bytes | None:
    """The whole body, or None once it passes :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Preparer:
    """Builds the requests ``session.request`` would send, without its per-call merging.

    The session holds nothing a call must merge: no cookies, no auth, and the environment
    was read once by :func:`build_session`; only its headers apply. A request without a
    body is a copy of one prepared once per method and URL, its query appended: parsing and
    checking the gateway's URL again on every send cost more than the rest of the building.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self.templates: dict[tuple[str, str], requests.PreparedRequest] = {}

    def __call__(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.PreparedRequest:
        if data is not None or headers:
            return self._prepare(method, url, data, headers)
        template = self.templates.get((method, url))
        if template is None:
            template = self.templates[(method, url)] = self._prepare(method, url, None, None)
        request = template.copy()
        if params:
            assert template.url is not None
            joint = "&" if "?" in template.url else "?"
            request.url = f"{template.url}{joint}{urlencode(params)}"
        return request

    def _prepare(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str] | None
    ) -> requests.PreparedRequest:
        request = requests.PreparedRequest()
        request.prepare(
            method=method,
            url=url,
            headers={**self.session.headers, **(headers or {})},
            data=data,
            hooks=self.session.hooks,
        )
        return request


def build_session(base_url: str) -> requests.Session:
    """A pooled session for the gateway at ``base_url``.

    The environment is read here, once: the proxy for ``base_url`` (``HTTPS_PROXY``,
    ``NO_PROXY`` …) and a CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``). requests
    would otherwise scan every environment variable, and look for a ``.netrc``, on every
    call: about a third of a send's CPU before this change.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    # pooled keep-alive connections; no retries in urllib3 (retrying is decided here, and
    # read=False keeps a read error from being turned into MaxRetryError)
    # its connections report to the call's deadline watch (worker.gateway.deadline)
    adapter = DeadlineAdapter(
        pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=Retry(total=0, read=False)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # never turned off: the password is in every request
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.headers["User-Agent"] = USER_AGENT
    return session


def cut_verdict(
    left: bool, claimed: bool, failure: TransportFailure | None, deadline_seconds: float
) -> TransportFailure:
    """Where a request cut by its call's deadline got to.

    ``left``: sending began on a connection; ``claimed``: a connection reported to the
    exchange at all; ``failure``: what the transport raised, if anything (after a cut it is
    only the echo of the cut, unless no connection was made yet).
    """
    if left:
        phase = Phase.MAYBE_SENT
    elif claimed:
        phase = Phase.NOT_SENT  # connected (or not started), but no request began
    elif failure is not None:
        return failure  # no connection yet: a connect timeout, say, tells the truth
    else:
        phase = Phase.MAYBE_SENT  # nothing known: for a send, the only safe guess
    if phase is Phase.MAYBE_SENT:
        return TransportFailure(
            phase, f"no complete answer within the call deadline ({deadline_seconds:g} s)"
        )
    return TransportFailure(
        phase, f"the call deadline ({deadline_seconds:g} s) passed before the request left"
    )


def settle(failure: TransportFailure, *, left: bool, claimed: bool) -> TransportFailure:
    """``failure`` corrected by what the connection reported: a failure on a connection on
    which no request began never sent anything, whatever it looked like.

    urllib3 reports a TLS handshake that timed out as a *read* timeout, for one.
    """
    if failure.phase is Phase.MAYBE_SENT and claimed and not left:
        return TransportFailure(Phase.NOT_SENT, f"{failure.reason}, before the request left")
    return failure
