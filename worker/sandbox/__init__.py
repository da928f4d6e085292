"""The sandbox gateway: a real HTTP server that speaks FIBO's wire format on FIBO's paths.

Develop and test without spending money. It checks the account it was started with
(wrong → code 3), keeps a balance that falls by a price per accepted message (too low →
code 14), refuses missing or invalid parameters (code 11), counts the Vietnam-local day's
``success|failed|pending`` for GetTotalMt, and records every accepted message and every
call. It never stores or prints the password.

Control endpoint (JSON; no authentication, so it listens on 127.0.0.1 by default):

==============================  =================================================================
``POST /_sandbox/script``       ``{"phone": "0912345678" | null, "actions": [...]}`` queues actions
                                for that number (matched on its last 9 digits) or, with null, for
                                any number. Each send call consumes one action: the number's own
                                queue first, then the any-number queue. Calls refused with 3 or 11
                                consume none. Actions: ``{"code": N}``; ``{"delay": seconds}``
                                (with or without a code); ``{"drop": true}`` (read the request,
                                close without a response; with a success code the message is
                                accepted first); ``{"http": 502}`` (an HTML error page);
                                ``{"body": "...", "status": 200}`` (a raw body, e.g. HTML, empty
                                or garbage with a 200); ``{"trickle": seconds}`` (the answer,
                                status line included, one byte per that many seconds; with or
                                without a code, http or body); and on a success
                                ``"delivery": "failed" | "pending"``. A bare number is a code.
``POST /_sandbox/balance``      ``{"balance": N}``
``POST /_sandbox/config``       any of ``{"format": "escaped" | "literal", "delay": seconds,
                                "price": N, "trickle": seconds}``; ``literal`` answers
                                ``<string><SMS>…`` unescaped; ``trickle`` (0: off) slows every
                                answer, balance and totals included, to one byte per that long
``POST /_sandbox/reset``        back to the start-up balance and config; all else cleared
``GET /_sandbox/messages``      ``{"messages": [...]}`` accepted, oldest first (``?phone=`` filters)
``GET /_sandbox/calls``         ``{"calls": [...]}`` every gateway call with the code answered
``GET /_sandbox/state``         balance, config, today's counters, queued scripts
==============================  =================================================================

Invalid control input answers 400 with ``{"error": "..."}``. From the command line,
``--script PHONE=CODE,CODE,...`` (PHONE may be ``*``; a step may also be ``drop``,
``http:502``, ``delay:SECONDS`` or ``trickle:SECONDS``) is read by :func:`parse_script_arg`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

from worker.sandbox.script import (
    Action,
    ActionLike,
    ScriptError,
    parse_script_arg,
    phone_key,
)
from worker.sandbox.server import Paths, SandboxHTTPServer
from worker.sandbox.state import (
    DEFAULT_BALANCE,
    DEFAULT_PRICE,
    AcceptedMessage,
    CallRecord,
    Config,
    ResponseFormat,
    SandboxState,
    Totals,
)
from worker.settings import BALANCE_PATH, SANDBOX_HOST, SEND_PATH, TOTALS_PATH, Settings

__all__ = [
    "AcceptedMessage",
    "Action",
    "CallRecord",
    "Config",
    "SandboxServer",
    "SandboxState",
    "ScriptError",
    "Totals",
    "parse_script_arg",
    "phone_key",
]

#: seconds between checks for a stop request in the serving loop
_POLL_INTERVAL = 0.05


class SandboxServer:
    """The sandbox on one port. Nothing listens until :meth:`start` or :meth:`serve_forever`."""

    def __init__(
        self,
        client_no: str,
        client_pass: str,
        *,
        host: str = SANDBOX_HOST,
        port: int = 0,
        balance: int = DEFAULT_BALANCE,
        price: int = DEFAULT_PRICE,
        send_path: str = SEND_PATH,
        balance_path: str = BALANCE_PATH,
        totals_path: str = TOTALS_PATH,
        response_format: ResponseFormat = "escaped",
        delay: float = 0.0,
        trickle: float = 0.0,
        scripts: Iterable[tuple[str | None, Iterable[ActionLike]]] = (),
        verbose: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``port=0`` picks a free port; ``scripts`` are ``(phone, actions)`` pairs, as
        :func:`parse_script_arg` returns; ``delay`` is in seconds, for every call; ``trickle``
        (seconds between the bytes of every answer, 0: off) too."""
        self.state = SandboxState(client_no, client_pass, balance=balance, price=price,
                                  response_format=response_format, delay=delay, trickle=trickle,
                                  clock=clock)
        for phone, actions in scripts:
            self.state.script(phone, list(actions))
        self.paths = Paths.of(send_path, balance_path, totals_path)
        self.host = host
        self.verbose = verbose
        self._port = port
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        port: int | None = None,
        host: str = SANDBOX_HOST,
        **options: Any,
    ) -> SandboxServer:
        """A sandbox that accepts ``settings``' account and serves its paths.

        ``port`` defaults to ``settings.sandbox_port``; ``options`` go to the constructor.
        """
        return cls(
            settings.client_no,
            settings.client_pass,
            host=host,
            port=settings.sandbox_port if port is None else port,
            send_path=settings.send_path,
            balance_path=settings.balance_path,
            totals_path=settings.totals_path,
            **options,
        )

    def __repr__(self) -> str:
        return f"SandboxServer(url={self.url!r}, client_no={self.state.client_no!r})"

    @property
    def client_no(self) -> str:
        """The account it accepts (the password is not exposed)."""
        return self.state.client_no

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the requested one until bound)."""
        httpd = self._httpd
        return httpd.server_port if httpd is not None else self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, to use as ``FIBOSMS_API_URL``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> SandboxServer:
        """Open the listening socket (once) without serving yet, so :attr:`url` is known."""
        with self._lock:
            if self._httpd is None:
                self._httpd = SandboxHTTPServer((self.host, self._port), self.state, self.paths,
                                                verbose=self.verbose)
            return self

    def start(self) -> SandboxServer:
        """Serve in a background daemon thread; returns once the socket listens."""
        self.bind()
        with self._lock:
            if self._serving or self._httpd is None:
                return self
            self._serving = True  # before the thread runs, so a quick stop() still shuts it
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"fibosms-sandbox:{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C or :meth:`stop` from another thread."""
        self.bind()
        with self._lock:
            if self._serving or self._httpd is None:
                raise RuntimeError("the sandbox is already serving")
            self._serving = True
            httpd = self._httpd
        try:
            httpd.serve_forever(poll_interval=_POLL_INTERVAL)
        except KeyboardInterrupt:
            pass
        finally:
            with self._lock:
                self._serving = False
            self.stop()

    def stop(self) -> None:
        """Stop listening and cut every open connection. The state is kept."""
        with self._lock:
            httpd, thread, serving = self._httpd, self._thread, self._serving
            self._httpd, self._thread, self._serving = None, None, False
        if httpd is None:
            return
        httpd.stopping.set()
        if serving:
            httpd.shutdown()  # waits for the serving loop, at most one poll interval
        httpd.server_close()
        httpd.close_connections()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- in-process control, as the /_sandbox/ endpoint offers -----------------------------

    def script(self, phone: str | None, actions: Iterable[ActionLike]) -> int:
        """Queue actions for ``phone`` (``None``: any number); the queue's new length."""
        return self.state.script(phone, list(actions))

    def set_balance(self, balance: int) -> None:
        self.state.set_balance(balance)

    def configure(
        self,
        *,
        response_format: ResponseFormat | None = None,
        delay: float | None = None,
        price: int | None = None,
        trickle: float | None = None,
    ) -> Config:
        return self.state.configure(
            response_format=response_format, delay=delay, price=price, trickle=trickle
        )

    def accepted(self, phone: str | None = None) -> list[AcceptedMessage]:
        return self.state.messages(phone)

    def calls(self) -> list[CallRecord]:
        return self.state.calls()

    def totals(self) -> Totals:
        """Today's (Vietnam-local) GetTotalMt counters."""
        return self.state.totals()

    def reset(self) -> None:
        self.state.reset()
