"""The sandbox's state and decisions: credentials, balance, scripted outcomes, day counters.

Pure logic, no I/O: the HTTP layer (``server.py``) asks a :class:`SandboxState` what to
answer and renders the :class:`Reply`. Delays are returned, not slept, so the lock is
never held while a call waits.
"""

from __future__ import annotations

import hmac
import math
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo

from worker.codes import INSUFFICIENT_BALANCE, SUCCESS_CODES

#: FIBO's day is Vietnam's day, not UTC's
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
WRONG_CREDENTIALS = 3
INVALID_PARAMETER = 11
DEFAULT_BALANCE = 1_000_000
#: balance units per accepted message
DEFAULT_PRICE = 1
#: records kept per list; older ones are dropped so a long-running sandbox stays bounded
MAX_RECORDS = 100_000
#: seconds; longer scripted or default delays are refused
MAX_DELAY = 3600.0
#: the script key for "whatever the number"
ANY = "*"

Delivery = Literal["success", "failed", "pending"]
ResponseFormat = Literal["escaped", "literal"]
Operation = Literal["SendMaskedSMS", "GetClientBalance", "GetTotalMt"]
ReplyKind = Literal["sms", "balance", "totals", "fault", "drop", "http", "raw"]


class ScriptError(ValueError):
    """A scripted action or a control value is malformed; the message says which."""


def phone_key(phone: str) -> str:
    """The last 9 digits: ``0912345678``, ``84912345678``, ``+84912345678`` are one number."""
    return re.sub(r"\D", "", phone)[-9:]


def vietnam_day(moment: datetime) -> date:
    """The Vietnam-local date of ``moment`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM).date()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _whole(name: str, value: object, *, minimum: int = 0) -> int:
    # bool is an int subclass; "balance": true is a caller's mistake, not 1
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScriptError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY:
        raise ScriptError(f"{name} must be between 0 and {MAX_DELAY:g} seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Action:
    """One scripted outcome, consumed by one send call.

    ``code`` answers that FIBO code; ``delay`` (seconds) waits first; ``drop`` closes the
    connection without a response (with a success ``code``: accepted, then cut);
    ``http`` answers an HTML error page with that status; ``body``/``status`` answer a raw
    body; ``delivery`` says how an accepted message ends in GetTotalMt's counters.
    """

    code: int | None = None
    delay: float | None = None
    drop: bool = False
    http: int | None = None
    body: str | None = None
    status: int | None = None
    content_type: str | None = None
    delivery: Delivery | None = None

    def __post_init__(self) -> None:
        if self.code is not None:
            _whole("code", self.code)
        if self.delay is not None:
            _seconds("delay", self.delay)
        if self.http is not None and not 400 <= _whole("http", self.http) <= 599:
            raise ScriptError(f"http must be an HTTP error status 400-599, got {self.http!r}")
        if self.status is not None and not 200 <= _whole("status", self.status) <= 599:
            raise ScriptError(f"status must be 200-599, got {self.status!r}")
        if (self.status is not None or self.content_type is not None) and self.body is None:
            raise ScriptError("status and content_type go with body")
        if sum(x is not None for x in (self.code, self.http, self.body)) > 1:
            raise ScriptError("an action has at most one of code, http, body")
        if self.drop and (self.http is not None or self.body is not None):
            raise ScriptError("drop cannot be combined with http or body")
        if self.delivery is not None:
            if self.delivery not in get_args(Delivery):
                raise ScriptError(f"delivery must be success, failed or pending, got "
                                  f"{self.delivery!r}")
            if not self.accepts:
                raise ScriptError("delivery only applies to an action that accepts the message")

    @property
    def accepts(self) -> bool:
        """Whether the send goes through the normal acceptance path (balance, record)."""
        if self.http is not None or self.body is not None:
            return False
        if self.code is None:
            return not self.drop
        return self.code in SUCCESS_CODES

    @classmethod
    def parse(cls, item: object) -> Action:
        """An action from its JSON form; a bare int is ``{"code": N}``."""
        if isinstance(item, Action):
            return item
        if isinstance(item, int) and not isinstance(item, bool):
            return cls(code=item)
        if not isinstance(item, Mapping):
            raise ScriptError(f"an action must be an object or a code, got {item!r}")
        unknown = set(item) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScriptError(f"unknown action keys {sorted(unknown)}")
        body, content_type = item.get("body"), item.get("content_type")
        for name, value in (("body", body), ("content_type", content_type)):
            if value is not None and not isinstance(value, str):
                raise ScriptError(f"{name} must be a string, got {value!r}")
        drop = item.get("drop", False)
        if not isinstance(drop, bool):
            raise ScriptError(f"drop must be true or false, got {drop!r}")
        return cls(
            code=item.get("code"),
            delay=item.get("delay"),
            drop=drop,
            http=item.get("http"),
            body=body,
            status=item.get("status"),
            content_type=content_type,
            delivery=item.get("delivery"),
        )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None and value is not False:
                out[name] = value
        return out


#: what scripting accepts: an action, its JSON form, or a bare FIBO code
ActionLike: TypeAlias = Action | Mapping[str, Any] | int


def parse_actions(items: object) -> list[Action]:
    """A list of actions from JSON (objects or bare codes)."""
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ScriptError(f"actions must be a list, got {items!r}")
    return [Action.parse(item) for item in items]


def parse_script_arg(arg: str) -> tuple[str | None, list[Action]]:
    """``"0912345678=2,2,200"`` → ``("0912345678", [code 2, code 2, code 200])``.

    PHONE may be ``*`` (any number: returned as ``None``). Besides codes, a step may be
    ``drop``, ``http:502`` or ``delay:SECONDS``.
    """
    phone, sep, rest = arg.partition("=")
    phone = phone.strip()
    usage = f"--script wants PHONE=CODE[,CODE...] (PHONE may be '*'), got {arg!r}"
    if not sep or not phone or not rest.strip():
        raise ScriptError(usage)
    if phone != ANY and not phone_key(phone):
        raise ScriptError(f"--script: {phone!r} is not a phone number; {usage}")
    actions = []
    for step in (t.strip() for t in rest.split(",")):
        name, _, value = step.partition(":")
        try:
            if step == "drop":
                actions.append(Action(drop=True))
            elif name == "http" and value:
                actions.append(Action(http=int(value)))
            elif name == "delay" and value:
                actions.append(Action(delay=float(value)))
            else:
                actions.append(Action(code=int(step)))
        except ValueError as exc:  # ScriptError is a ValueError too
            raise ScriptError(f"--script: bad step {step!r} ({exc}); {usage}") from None
    return (None if phone == ANY else phone), actions


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

    def __post_init__(self) -> None:
        if self.response_format not in get_args(ResponseFormat):
            raise ScriptError(f"format must be escaped or literal, got {self.response_format!r}")
        _seconds("delay", self.delay)
        _whole("price", self.price)

    def to_json(self) -> dict[str, object]:
        return {"format": self.response_format, "delay": self.delay, "price": self.price}


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
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not client_no or not client_pass:
            raise ScriptError("the sandbox needs a client number and a password")
        self.client_no = client_no
        self._client_pass = client_pass
        self._initial_balance = _whole("balance", balance)
        self._initial_config = Config(response_format, delay, price)
        self._clock = clock or _utc_now
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
                return Reply("sms", code=code, delay=delay, literal=self._literal)

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
                if action.http is not None:
                    log(None, "http", action)
                    return Reply("http", status=action.http, delay=delay)
                if action.body is not None:
                    log(None, "raw", action)
                    return Reply("raw", status=action.status or 200, body=action.body,
                                 content_type=action.content_type, delay=delay)
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
            delay, literal = self._config.delay, self._literal
            if not self._authentic(client_no, params.get("clientPass")):
                self._log_call(now, "GetClientBalance", method, client_no, None,
                               WRONG_CREDENTIALS, "answered")
                return Reply("sms", code=WRONG_CREDENTIALS, delay=delay, literal=literal)
            self._log_call(now, "GetClientBalance", method, client_no, None, 200, "answered",
                           detail=str(self._balance))
            return Reply("balance", code=200, balance=self._balance, delay=delay,
                         literal=literal)

    def totals_query(self, username: str | None, password: str | None) -> Reply:
        """GetTotalMt. Bad credentials answer ``3``: a sandbox choice, the real one is unknown."""
        with self._lock:
            now, delay = self._clock(), self._config.delay
            if not self._authentic(username, password):
                self._log_call(now, "GetTotalMt", "POST", username, None, WRONG_CREDENTIALS,
                               "answered", detail=str(WRONG_CREDENTIALS))
                return Reply("totals", totals=str(WRONG_CREDENTIALS), delay=delay)
            result = self._totals(vietnam_day(now)).wire
            self._log_call(now, "GetTotalMt", "POST", username, None, None, "answered",
                           detail=result)
            return Reply("totals", totals=result, delay=delay)

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
        value = _whole("balance", balance)
        with self._lock:
            self._balance = value

    def configure(
        self,
        *,
        response_format: ResponseFormat | None = None,
        delay: float | None = None,
        price: int | None = None,
    ) -> Config:
        """Change what is given (a ``None`` keeps the current value); the new config."""
        with self._lock:
            current = self._config
            self._config = Config(
                current.response_format if response_format is None else response_format,
                current.delay if delay is None else delay,
                current.price if price is None else price,
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
