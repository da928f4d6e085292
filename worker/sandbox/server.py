"""The sandbox's HTTP side: FIBO's wire format on FIBO's paths, and the ``/_sandbox/`` control.

Each request is turned into a call on :class:`~worker.sandbox.state.SandboxState`, whose
:class:`~worker.sandbox.state.Reply` is rendered here. Nothing here decides an outcome.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from worker.sandbox.render import (
    SOAP_ENV,
    TEMPURI,
    render,
    render_error_page,
)
from worker.sandbox.script import ScriptError
from worker.sandbox.state import Reply, SandboxState

SOAP_ACTION = "http://tempuri.org/GetTotalMt"
JSON_TYPE = "application/json"
CONTROL_PREFIX = "/_sandbox/"
#: bytes; a bigger request body is refused with 413
MAX_BODY = 1 << 20
#: seconds an idle keep-alive connection is kept open
IDLE_TIMEOUT = 30.0

# up to the next parameter, the request line's " HTTP/1.1", a quote or the end: a malformed
# request line may carry an unencoded space inside the password
_SECRET_IN_QUERY = re.compile(
    r"""(?im)((?:clientPass|password)=)[^&]*?(?=&|\s+HTTP/\d|["']|\s*$)"""
)


def redact(text: str) -> str:
    """``…&clientPass=secret&…`` → ``…&clientPass=***&…``, for anything printed."""
    return _SECRET_IN_QUERY.sub(r"\1***", text)


# -- SOAP --------------------------------------------------------------------------------


class SoapError(ValueError):
    """The request is not a GetTotalMt SOAP 1.1 call; the message is the fault string."""


def parse_totals_request(body: bytes) -> tuple[str | None, str | None]:
    """``(Username, Password)`` of a GetTotalMt envelope; a missing element is None."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException):
        # entity expansion and external references land here too (defusedxml refuses them)
        raise SoapError("Server was unable to read request.") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapError("Possible SOAP version mismatch: the root is not a SOAP 1.1 Envelope.")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        raise SoapError("Server was unable to read request: no soap:Body element.")
    operation = soap_body[0]
    if operation.tag != f"{{{TEMPURI}}}GetTotalMt":
        raise SoapError(f"Server did not recognize the request element {operation.tag[:100]}.")

    # ASMX reads only namespace-qualified parameters; unqualified ones arrive as null
    def text(name: str) -> str | None:
        element = operation.find(f"{{{TEMPURI}}}{name}")
        return None if element is None else (element.text or "")

    return text("Username"), text("Password")


# -- the server --------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """The gateway's paths, lower-cased: IIS matches ASMX paths without regard to case."""

    send: str
    balance: str
    totals: str

    @classmethod
    def of(cls, send: str, balance: str, totals: str) -> Paths:
        paths = [send, balance, totals]
        for path in paths:
            if not path.startswith("/") or path.lower().startswith(CONTROL_PREFIX):
                raise ValueError(f"a gateway path must start with '/' and not {CONTROL_PREFIX}: "
                                 f"{path!r}")
        if len({p.lower() for p in paths}) != 3:
            raise ValueError(f"the send, balance and totals paths must differ: {paths}")
        return cls(send.lower(), balance.lower(), totals.lower())


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server bound to one :class:`SandboxState`."""

    daemon_threads = True
    # Celery workers and test threads connect in bursts; 5 (the default) drops SYNs
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        state: SandboxState,
        paths: Paths,
        *,
        verbose: bool = False,
    ) -> None:
        self.state = state
        self.paths = paths
        self.verbose = verbose
        #: set on stop: wakes delayed replies and refuses new connections
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on a slow resolver
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        if self.stopping.is_set():
            _shut(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut every open connection, idle keep-alive ones included: a stopped gateway is down."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # a client that gave up (read timeout, reset) or a stop mid-request is not a fault
        if isinstance(error, ConnectionError | TimeoutError) or (
            self.stopping.is_set() and isinstance(error, OSError)
        ):
            return
        self.log(f"fibosms sandbox: error handling a request:\n{traceback.format_exc()}")

    def log(self, text: str) -> None:
        sys.stderr.write(redact(text if text.endswith("\n") else text + "\n"))


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its handler
        connection.shutdown(socket.SHUT_RDWR)


class SandboxHandler(BaseHTTPRequestHandler):
    """One connection: FIBO's operations and the control endpoint."""

    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "fibosms-sandbox"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    # buffered: headers and body leave in one write, flushed after each request
    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the buffered writer would otherwise hold the 100 back
        return ok

    def version_string(self) -> str:
        return self.server_version  # not Python's version: nothing for a client to rely on

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            self.server.log(f"{self.address_string()} - {format % args}")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the default echoes the request line, query string and password included, back
        super().send_error(code)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- dispatch --------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control(method, url.path[len(CONTROL_PREFIX):].strip("/"), url.query, body)
            return
        state, paths, path = self.server.state, self.server.paths, url.path.lower()
        try:
            if path == paths.send:
                reply = state.send(self._params(method, url.query, body), method=method)
            elif path == paths.balance:
                reply = state.balance_query(self._params(method, url.query, body), method=method)
            elif path == paths.totals and method == "POST":
                reply = self._totals(body)
            elif path == paths.totals:
                self._send(405, b"GetTotalMt is a SOAP POST\n", "text/plain", {"Allow": "POST"})
                return
            else:
                self._send(404, render_error_page(404).encode(), "text/html")
                return
        except Exception:
            self.server.log(f"fibosms sandbox: internal error:\n{traceback.format_exc()}")
            self._send(500, b"sandbox internal error\n", "text/plain")
            return
        self._answer(reply)

    def _totals(self, body: bytes) -> Reply:
        state = self.server.state
        soap_action = (self.headers.get("SOAPAction") or "").strip().strip('"')
        if soap_action != SOAP_ACTION:
            return state.fault("GetTotalMt", "POST", "Server did not recognize the value of HTTP "
                               f"Header SOAPAction: {soap_action[:100]}.")
        try:
            username, password = parse_totals_request(body)
        except SoapError as exc:
            return state.fault("GetTotalMt", "POST", str(exc))
        return state.totals_query(username, password)

    def _answer(self, reply: Reply) -> None:
        if reply.delay > 0 and self.server.stopping.wait(reply.delay):
            self.close_connection = True  # stopped while waiting: the gateway went down
            return
        if reply.kind == "drop":
            self.close_connection = True  # the request was read; no byte of answer
            return
        status, content_type, text = render(reply)
        if reply.trickle > 0:
            self._trickle(status, text.encode("utf-8"), content_type, reply.trickle)
            return
        self._send(status, text.encode("utf-8"), content_type)

    def _trickle(self, status: int, body: bytes, content_type: str, pause: float) -> None:
        """The whole answer, status line first, one byte every ``pause`` seconds."""
        self.close_connection = True  # a client that gives up leaves the stream half-read
        self.log_request(status)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = (
            f"{self.protocol_version} {status} {phrase}\r\nServer: {self.version_string()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        for index, byte in enumerate(head + body):
            if index and self.server.stopping.wait(pause):
                return  # stopped: the gateway went down mid-answer
            # straight to the socket: the buffered writer would hold the bytes back
            self.connection.sendall(bytes((byte,)))

    # -- control ---------------------------------------------------------------------------

    def _control(self, method: str, name: str, query: str, body: bytes) -> None:
        state = self.server.state
        routes = {"messages": "GET", "calls": "GET", "state": "GET", "script": "POST",
                  "balance": "POST", "config": "POST", "reset": "POST"}
        if name not in routes:
            self._json(404, {"error": f"no control endpoint {name!r}", "endpoints": routes})
            return
        if routes[name] != method:
            self._json(405, {"error": f"{CONTROL_PREFIX}{name} takes {routes[name]}"})
            return
        payload: object
        try:
            if name == "messages":
                phone = parse_qs(query).get("phone", [None])[0]
                payload = {"messages": [m.to_json() for m in state.messages(phone)]}
            elif name == "calls":
                payload = {"calls": [c.to_json() for c in state.calls()]}
            elif name == "state":
                payload = state.snapshot()
            elif name == "reset":
                state.reset()
                payload = state.snapshot()
            else:
                payload = self._control_post(name, _json_object(body))
        except ScriptError as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, payload)

    def _control_post(self, name: str, data: dict[str, Any]) -> object:
        state = self.server.state
        if name == "script":
            _keys(data, required={"actions"}, allowed={"phone", "actions"})
            queued = state.script(data.get("phone"), data["actions"])
            return {"phone": data.get("phone"), "queued": queued}
        if name == "balance":
            _keys(data, required={"balance"}, allowed={"balance"})
            state.set_balance(data["balance"])
            return {"balance": state.balance}
        _keys(data, required=set(), allowed={"format", "delay", "price", "trickle"})
        config = state.configure(
            response_format=data.get("format"), delay=data.get("delay"), price=data.get("price"),
            trickle=data.get("trickle"),
        )
        return config.to_json()

    # -- I/O helpers -----------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering an error (the connection then closes)."""
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "send a Content-Length, not a chunked body")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self._refuse(400, "bad Content-Length")
            return None
        if length > MAX_BODY:
            self._refuse(413, f"the body is over {MAX_BODY} bytes")
            return None
        return self.rfile.read(length)

    def _params(self, method: str, query: str, body: bytes) -> dict[str, str]:
        # ASMX binds GET parameters from the query string and POST ones from the form only
        source = query if method == "GET" else body.decode("utf-8", errors="replace")
        return {k: v[0] for k, v in parse_qs(source, keep_blank_values=True).items()}

    def _refuse(self, status: int, reason: str) -> None:
        self.close_connection = True  # the unread body would be taken for the next request
        self._send(status, f"{reason}\n".encode(), "text/plain")

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), JSON_TYPE)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:  # UnicodeDecodeError is one too
        raise ScriptError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ScriptError(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _keys(data: dict[str, Any], *, required: set[str], allowed: set[str]) -> None:
    missing, unknown = required - set(data), set(data) - allowed
    if missing:
        raise ScriptError(f"missing {sorted(missing)}")
    if unknown:
        raise ScriptError(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
