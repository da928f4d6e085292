"""The sandbox's state and decisions: credentials, balance, scripted outcomes, day counters.

Pure logic, no I/O: the HTTP layer (``server.py``) asks a :class:`SandboxState` what to
answer and renders the :class:`Reply`. Delays and trickles are returned, not slept, so
the lock is never held while a call waits. Scripted actions live in :mod:`.script`.
"""

from __future__ import annotations

import hmac
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from worker.clock import now
from worker.codes import INSUFFICIENT_BALANCE
from worker.sandbox.script import (
    ANY,
    Action,
    Delivery,
    ScriptError,
    delay_seconds,
    parse_actions,
    phone_key,
    trickle_seconds,
    whole_number,
)

#: FIBO's day is Vietnam's day, not UTC's
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
WRONG_CREDENTIALS = 3
INVALID_PARAMETER = 11
DEFAULT_BALANCE = 1_000_000
#: balance units per accepted message
DEFAULT_PRICE = 1
#: records kept per list; older ones are dropped so a long-running sandbox stays bounded
MAX_RECORDS = 100_000
ResponseFormat = Literal["escaped", "literal"]
Operation = Literal["SendMaskedSMS", "GetClientBalance", "GetTotalMt"]
ReplyKind = Literal["sms", "balance", "totals", "fault", "drop", "http", "raw"]


def vietnam_day(moment: datetime) -> date:
    """The Vietnam-local date of ``moment`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM).date()


@dataclass(frozen=True)
class AcceptedMessage:
    """A message the sandbox accepted (answered with a success code)."""

    seq: int
    time: datetime
    #: as received, before any normalising
    phone: str
    text: str
    sender: str | None
    service_type: int
    sms_guid: str
    code: int
    delivery: Delivery

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "phone": self.phone,
            "text": self.text,
            "sender": self.sender,
            "service_type": self.service_type,
            "sms_guid": self.sms_guid,
            "code": self.code,
            "delivery": self.delivery,
        }


@dataclass(frozen=True)
class CallRecord:
    """One gateway call, refused ones included. Never holds the password."""

    seq: int
    time: datetime
    operation: Operation
    method: str
    client_no: str | None
    phone: str | None
    #: the FIBO code answered; None when there was no FIBO answer (drop, http, raw, fault)
    code: int | None
    #: answered | dropped | http | raw | fault
    outcome: str
    #: GetTotalMt's result, a fault's reason, the balance answered
    detail: str | None = None
    action: Action | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "operation": self.operation,
            "method": self.method,
            "client_no": self.client_no,
            "phone": self.phone,
            "code": self.code,
            "outcome": self.outcome,
            "detail": self.detail,
            "action": None if self.action is None else self.action.to_json(),
        }


@dataclass(frozen=True)
class Totals:
    """GetTotalMt's counters for one Vietnam-local day."""

    day: date
    success: int = 0
    failed: int = 0
    pending: int = 0

    @property
    def wire(self) -> str:
        return f"{self.success}|{self.failed}|{self.pending}"


@dataclass(frozen=True)
class Config:
    """What the control endpoint can change while running."""

    response_format: ResponseFormat = "escaped"
    #: seconds every gateway call waits unless its scripted action sets its own
    delay: float = 0.0
    price: int = DEFAULT_PRICE
    #: seconds between the bytes of every answer (0: sent at once) unless the action says
    trickle: float = 0.0

    def __post_init__(self) -> None:
        if self.response_format not in get_args(ResponseFormat):
            raise ScriptError(f"format must be escaped or literal, got {self.response_format!r}")
        delay_seconds("delay", self.delay)
        whole_number("price", self.price)
        if self.trickle != 0:
            trickle_seconds("trickle", self.trickle)

    def to_json(self) -> dict[str, object]:
        return {"format": self.response_format, "delay": self.delay, "price": self.price,
                "trickle": self.trickle}


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer must answer, after waiting ``delay`` seconds."""

    kind: ReplyKind
    code: int | None = None
    balance: int | None = None
    #: GetTotalMt's result text: ``success|failed|pending`` or a code
    totals: str | None = None
    status: int = 200
    body: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    literal: bool = False
    #: seconds between the bytes of the answer; 0: all at once
    trickle: float = 0.0


def _trickle(config: Config, action: Action | None) -> float:
    return config.trickle if action is None or action.trickle is None else action.trickle


class SandboxState:
    """Credentials, balance, scripts, counters and records, behind one lock."""

    def __init__(
        self,
        client_no: str,
        client_pass: str,
        *,
        balance: int = DEFAULT_BALANCE,
        price: int = DEFAULT_PRICE,
        response_format: ResponseFormat = "escaped",
        delay: float = 0.0,
        trickle: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not client_no or not client_pass:
            raise ScriptError("the sandbox needs a client number and a password")
        self.client_no = client_no
        self._client_pass = client_pass
        self._initial_balance = whole_number("balance", balance)
        self._initial_config = Config(response_format, delay, price, trickle)
        self._clock = clock or now
        self._lock = threading.Lock()
        self._clear()

    def __repr__(self) -> str:
        return (f"SandboxState(client_no={self.client_no!r}, balance={self._balance}, "
                f"accepted={self._message_seq}, calls={self._call_seq})")

    def _clear(self) -> None:
        self._balance = self._initial_balance
        self._config = self._initial_config
        self._scripts: dict[str, deque[Action]] = {}
        self._counters: dict[date, Counter[str]] = {}
        self._messages: deque[AcceptedMessage] = deque(maxlen=MAX_RECORDS)
        self._calls: deque[CallRecord] = deque(maxlen=MAX_RECORDS)
        self._message_seq = 0
        self._call_seq = 0

    # -- gateway operations -------------------------------------------------------------

    def send(self, params: Mapping[str, str], *, method: str = "GET") -> Reply:
        """SendMaskedSMS. Refused calls (3, 11) consume no scripted action."""
        with self._lock:
            now = self._clock()
            client_no, phone = params.get("clientNo"), params.get("phoneNumber")
            config = self._config

            def log(code: int | None, outcome: str, action: Action | None = None) -> None:
                self._log_call(now, "SendMaskedSMS", method, client_no, phone, code, outcome,
                               action=action)

            def answer(code: int, action: Action | None = None) -> Reply:
                delay = config.delay if action is None or action.delay is None else action.delay
                if action is not None and action.drop:
                    log(code, "dropped", action)
                    return Reply("drop", code=code, delay=delay)
                log(code, "answered", action)
                return Reply("sms", code=code, delay=delay, literal=self._literal,
                             trickle=_trickle(config, action))

            if not self._authentic(client_no, params.get("clientPass")):
                return answer(WRONG_CREDENTIALS)
            text = params.get("smsMessage")
            service_type = (params.get("serviceType") or "0").strip()
            if not phone or not phone.strip() or not text or service_type not in ("0", "1"):
                return answer(INVALID_PARAMETER)
            assert phone is not None and text is not None  # narrowed above, for mypy

            action = self._next_action(phone)
            if action is not None and not action.accepts:
                delay = config.delay if action.delay is None else action.delay
                trickle = _trickle(config, action)
                if action.http is not None:
                    log(None, "http", action)
                    return Reply("http", status=action.http, delay=delay, trickle=trickle)
                if action.body is not None:
                    log(None, "raw", action)
                    return Reply("raw", status=action.status or 200, body=action.body,
                                 content_type=action.content_type, delay=delay, trickle=trickle)
                if action.code is None:  # a bare drop: read the request, never accept it
                    log(None, "dropped", action)
                    return Reply("drop", delay=delay)
                return answer(action.code, action)

            if self._balance < config.price:
                return answer(INSUFFICIENT_BALANCE, action)
            self._balance -= config.price
            code = action.code if action is not None and action.code is not None else 200
            delivery: Delivery = (action.delivery if action is not None and action.delivery
                                  else "success")
            self._counters.setdefault(vietnam_day(now), Counter())[delivery] += 1
            self._message_seq += 1
            self._messages.append(AcceptedMessage(
                seq=self._message_seq, time=now, phone=phone, text=text,
                sender=params.get("senderName"), service_type=int(service_type),
                sms_guid=params.get("smsGUID") or "0", code=code, delivery=delivery,
            ))
            return answer(code, action)

    def balance_query(self, params: Mapping[str, str], *, method: str = "GET") -> Reply:
        """GetClientBalance."""
        with self._lock:
            now, client_no = self._clock(), params.get("clientNo")
            delay, literal, trickle = self._config.delay, self._literal, self._config.trickle
            if not self._authentic(client_no, params.get("clientPass")):
                self._log_call(now, "GetClientBalance", method, client_no, None,
                               WRONG_CREDENTIALS, "answered")
                return Reply("sms", code=WRONG_CREDENTIALS, delay=delay, literal=literal,
                             trickle=trickle)
            self._log_call(now, "GetClientBalance", method, client_no, None, 200, "answered",
                           detail=str(self._balance))
            return Reply("balance", code=200, balance=self._balance, delay=delay,
                         literal=literal, trickle=trickle)

    def totals_query(self, username: str | None, password: str | None) -> Reply:
        """GetTotalMt. Bad credentials answer ``3``: a sandbox choice, the real one is unknown."""
        with self._lock:
            now, delay, trickle = self._clock(), self._config.delay, self._config.trickle
            if not self._authentic(username, password):
                self._log_call(now, "GetTotalMt", "POST", username, None, WRONG_CREDENTIALS,
                               "answered", detail=str(WRONG_CREDENTIALS))
                return Reply("totals", totals=str(WRONG_CREDENTIALS), delay=delay,
                             trickle=trickle)
            result = self._totals(vietnam_day(now)).wire
            self._log_call(now, "GetTotalMt", "POST", username, None, None, "answered",
                           detail=result)
            return Reply("totals", totals=result, delay=delay, trickle=trickle)

    def fault(self, operation: Operation, method: str, reason: str) -> Reply:
        """Record a call refused before it reached the state (a malformed SOAP request)."""
        with self._lock:
            self._log_call(self._clock(), operation, method, None, None, None, "fault",
                           detail=reason)
            return Reply("fault", status=500, body=reason)

    # -- control ------------------------------------------------------------------------

    def script(self, phone: str | None, actions: object) -> int:
        """Queue ``actions`` for ``phone`` (``None`` or ``*``: any number); the queue's length."""
        parsed = parse_actions(actions)
        if phone is None or phone == ANY:
            key = ANY
        elif isinstance(phone, str) and phone_key(phone):
            key = phone_key(phone)
        else:
            raise ScriptError(f"phone must be a phone number, '*' or null, got {phone!r}")
        with self._lock:
            queue = self._scripts.setdefault(key, deque())
            queue.extend(parsed)
            length = len(queue)
            if not queue:
                del self._scripts[key]
            return length

    def set_balance(self, balance: int) -> None:
        value = whole_number("balance", balance)
        with self._lock:
            self._balance = value

    def configure(
        self,
        *,
        response_format: ResponseFormat | None = None,
        delay: float | None = None,
        price: int | None = None,
        trickle: float | None = None,
    ) -> Config:
        """Change what is given (a ``None`` keeps the current value); the new config."""
        with self._lock:
            current = self._config
            self._config = Config(
                current.response_format if response_format is None else response_format,
                current.delay if delay is None else delay,
                current.price if price is None else price,
                current.trickle if trickle is None else trickle,
            )
            return self._config

    def reset(self) -> None:
        """Back to the start-up balance and config; scripts, counters and records cleared."""
        with self._lock:
            self._clear()

    # -- reading ------------------------------------------------------------------------

    @property
    def balance(self) -> int:
        with self._lock:
            return self._balance

    @property
    def config(self) -> Config:
        with self._lock:
            return self._config

    def messages(self, phone: str | None = None) -> list[AcceptedMessage]:
        """Accepted messages, oldest first; only those to ``phone`` (last 9 digits) if given."""
        with self._lock:
            found = list(self._messages)
        if phone is None:
            return found
        key = phone_key(phone)
        return [m for m in found if key and phone_key(m.phone) == key]

    def calls(self) -> list[CallRecord]:
        with self._lock:
            return list(self._calls)

    def totals(self, day: date | None = None) -> Totals:
        """The counters of ``day`` (default: today in Vietnam)."""
        with self._lock:
            return self._totals(day or vietnam_day(self._clock()))

    def snapshot(self) -> dict[str, object]:
        """Balance, config, today's counters and pending scripts, as JSON."""
        with self._lock:
            today = self._totals(vietnam_day(self._clock()))
            return {
                "client_no": self.client_no,
                "balance": self._balance,
                **self._config.to_json(),
                "today": {"date": today.day.isoformat(), "success": today.success,
                          "failed": today.failed, "pending": today.pending},
                "accepted": self._message_seq,
                "calls": self._call_seq,
                "scripts": {k: [a.to_json() for a in q] for k, q in self._scripts.items()},
            }

    # -- internals (lock held) ----------------------------------------------------------

    @property
    def _literal(self) -> bool:
        return self._config.response_format == "literal"

    def _authentic(self, client_no: str | None, password: str | None) -> bool:
        if client_no is None or password is None:
            return False
        # both compared, in constant time, so a wrong account and a wrong password look alike
        number_ok = hmac.compare_digest(client_no.encode(), self.client_no.encode())
        pass_ok = hmac.compare_digest(password.encode(), self._client_pass.encode())
        return number_ok and pass_ok

    def _next_action(self, phone: str) -> Action | None:
        # the number's own queue first: it is the more specific script
        for key in (phone_key(phone), ANY):
            queue = self._scripts.get(key) if key else None
            if queue:
                action = queue.popleft()
                if not queue:
                    del self._scripts[key]
                return action
        return None

    def _totals(self, day: date) -> Totals:
        counts = self._counters.get(day, Counter())
        return Totals(day, counts["success"], counts["failed"], counts["pending"])

    def _log_call(
        self,
        now: datetime,
        operation: Operation,
        method: str,
        client_no: str | None,
        phone: str | None,
        code: int | None,
        outcome: str,
        *,
        detail: str | None = None,
        action: Action | None = None,
    ) -> None:
        self._call_seq += 1
        self._calls.append(CallRecord(self._call_seq, now, operation, method, client_no, phone,
                                      code, outcome, detail, action))
